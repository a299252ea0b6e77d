"""The only code that touches ComfyUI: hooks, routes, the check node. Kept thin.

Why the guard wraps ``execution.validate_prompt`` (and does not rely on
``PromptServer.add_on_prompt_handler``): ComfyUI swallows an exception raised
by an on-prompt handler and runs the prompt anyway, so a handler-only guard
fails *open*. ``server.post_prompt`` looks ``execution.validate_prompt`` up at
request time and answers 400 with its ``node_errors`` when it says invalid;
the wrapper runs the guard after ComfyUI's own validation and turns a refusal,
*or any exception of the guard itself*, into such an answer (fail closed).

A second lock sits on the nodes: the ``FUNCTION`` of each ComfyUI_Sonic node
class is wrapped so that it raises unless the prompt being executed was
approved by the guard. If the validation hook was ever bypassed (another pack
replacing ``validate_prompt``, a ComfyUI that validates elsewhere), Sonic
still does not run unchecked.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import logging
import threading
import time
import traceback
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from ..model_folders import ModelFolders, comfyui_folder_lists
from .config import config_path, load_config, pack_dir
from .context import PackContext, open_context
from .guard import SONIC_NODE_TYPES, Verdict, guard_prompt, is_sonic_prompt, node_errors, refusal
from .messages import comfy_locale, pick, text

__all__ = [
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "WEB_DIRECTORY",
    "Pack",
    "PackExports",
    "pack_exports",
    "setup",
]

log = logging.getLogger("sonic_registry")
WEB_DIRECTORY = str(Path(__file__).parent / "web")
_WRAPPED = "__sonic_registry_guard__"
_KEEP = 256  # approved prompts remembered (queued or running)


class Pack:
    """The pack's state inside one ComfyUI server process."""

    def __init__(self, server: Any, execution: Any, folder_paths: Any, nodes: Any) -> None:
        self.server = server
        self.execution = execution
        self.folder_paths = folder_paths
        self.nodes = nodes
        self.approved: OrderedDict[str, Verdict] = OrderedDict()
        self.clients: OrderedDict[str, str | None] = OrderedDict()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="sonic-registry")
        self._ctx: PackContext | None = None
        self._ctx_key: tuple[Any, ...] | None = None
        self._lock = threading.Lock()

    # -- context -----------------------------------------------------------------

    @property
    def user_dir(self) -> str:
        return str(self.folder_paths.get_user_directory())

    def context(self) -> PackContext:
        """The open context; reopened when the config file (or its env var) changes."""
        path = config_path(self.user_dir)  # the very file load_config reads, or None
        key: tuple[Any, ...] = (str(path), None)
        if path is not None:
            try:
                st = path.stat()
                key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
            except OSError:
                pass
        if self._ctx is None or key != self._ctx_key:
            config = load_config(self.user_dir)
            self._ctx = open_context(
                config,
                self.model_folders(),
                user_dir=self.user_dir,
                input_dir=self.folder_paths.get_input_directory(),
            )
            self._ctx_key = key
        else:
            self._ctx.models = self.model_folders()  # custom nodes may add folders later
        return self._ctx

    def model_folders(self) -> ModelFolders:
        """Where ComfyUI loads model files from now: ``folder_paths``'s folder list, in
        its order (``extra_model_paths.yaml``'s folders and those custom nodes add)."""
        table = getattr(self.folder_paths, "folder_names_and_paths", {})
        return ModelFolders.comfyui(self.folder_paths.models_dir, comfyui_folder_lists(table))

    def locale(self) -> str:
        configured = self._ctx.config.locale if self._ctx is not None else "auto"
        return comfy_locale(self.user_dir, configured)

    def send(self, event: str, data: dict[str, Any], prompt_id: str | None = None) -> None:
        sid = self.clients.get(prompt_id) if prompt_id is not None else None
        self.server.send_sync(event, data, sid)

    # -- layer 1: the validation hook ------------------------------------------

    def install(self) -> None:
        original = self.execution.validate_prompt
        if not getattr(original, _WRAPPED, False):

            @functools.wraps(original)
            async def validate_prompt(prompt_id: Any, prompt: Any, *args: Any, **kw: Any) -> Any:
                result = await original(prompt_id, prompt, *args, **kw)
                return await self.guard(str(prompt_id), prompt, result)

            setattr(validate_prompt, _WRAPPED, True)
            self.execution.validate_prompt = validate_prompt
        self.server.add_on_prompt_handler(self.on_prompt)
        self.wrap_sonic_nodes()
        self._wrap_task_done()

    def on_prompt(self, json_data: dict[str, Any]) -> dict[str, Any]:
        """Remember who queued which prompt (for warnings), and lock late-loaded nodes."""
        prompt_id = json_data.get("prompt_id")
        if not isinstance(prompt_id, str) or not prompt_id:
            prompt_id = str(uuid.uuid4())
            json_data["prompt_id"] = prompt_id
        client = json_data.get("client_id")
        self.clients[prompt_id] = client if isinstance(client, str) else None
        while len(self.clients) > _KEEP:
            self.clients.popitem(last=False)
        self.wrap_sonic_nodes()
        return json_data

    async def guard(self, prompt_id: str, prompt: Any, result: Any) -> Any:
        """ComfyUI's validation result, or a refusal in the same shape."""
        if not is_sonic_prompt(prompt) or not result[0]:
            return result  # not Sonic, or ComfyUI itself already refuses
        self.wrap_sonic_nodes()
        loop = asyncio.get_running_loop()
        try:
            verdict = await loop.run_in_executor(self.executor, self._judge, prompt)
        except Exception as exc:  # fail closed: an unchecked prompt does not run
            log.error("sonic-registry guard failed:\n%s", traceback.format_exc())
            return self._refuse_error(prompt, exc, result)
        locale = self.locale()
        self.send("sonic_registry.verdict", self._event(prompt_id, verdict), prompt_id)
        if not verdict.ok:
            lines = [pick(f.message, locale) for f in verdict.refused]
            errors = {**result[3], **node_errors(verdict, prompt, locale, result[2])}
            log.warning("sonic-registry refused prompt %s: %s", prompt_id, "; ".join(lines))
            return (False, refusal(lines, locale), [], errors)
        for f in verdict.warnings:
            log.warning("sonic-registry: %s", f.message[0])
        with self._lock:
            self.approved[prompt_id] = verdict
            while len(self.approved) > _KEEP:
                self.approved.popitem(last=False)
        return result

    def _judge(self, prompt: Any) -> Verdict:
        return guard_prompt(prompt, self.context())

    def _refuse_error(self, prompt: Any, exc: BaseException, result: Any) -> Any:
        locale = self.locale()
        detail = f"{type(exc).__name__}: {exc}"
        line = pick(text("guard_error", detail=detail), locale)
        sonic = [str(k) for k, v in prompt.items() if v.get("class_type") in SONIC_NODE_TYPES]
        entry = {
            "type": "sonic_registry_guard_error",
            "message": pick(text("refused_title"), locale),
            "details": line,
            "extra_info": {},
        }
        errors = {
            n: {
                "errors": [entry],
                "dependent_outputs": list(result[2]),
                "class_type": prompt[n].get("class_type"),
            }
            for n in sonic
        }
        return (False, refusal([line], locale), [], errors)

    @staticmethod
    def _event(prompt_id: str, verdict: Verdict) -> dict[str, Any]:
        data = verdict.to_dict()
        return {
            "prompt_id": prompt_id,
            "ok": data["ok"],
            "statuses": data["statuses"],
            "warnings": data["warnings"],
            "refused": data["refused"],
        }

    # -- layer 2: the nodes themselves -----------------------------------------

    def wrap_sonic_nodes(self) -> None:
        """Make each ComfyUI_Sonic node refuse to run for a prompt the guard did not approve."""
        for name in SONIC_NODE_TYPES:
            cls = self.nodes.NODE_CLASS_MAPPINGS.get(name)
            fn_name = getattr(cls, "FUNCTION", None)
            fn = getattr(cls, fn_name, None) if isinstance(fn_name, str) else None
            if fn is None or getattr(fn, _WRAPPED, False):
                continue
            setattr(cls, fn_name, self._locked(name, fn))  # type: ignore[arg-type]

    def _locked(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def check() -> None:
            prompt_id = getattr(self.server, "last_prompt_id", None)
            if prompt_id not in self.approved:
                raise RuntimeError(
                    f"sonic-registry: {name} refuses to run: prompt {prompt_id} was not "
                    "checked by the release guard (fail closed)"
                )

        if inspect.iscoroutinefunction(fn):  # ComfyUI awaits async node functions

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                check()
                return await fn(*args, **kwargs)

            setattr(run_async, _WRAPPED, True)
            return run_async

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            check()
            return fn(*args, **kwargs)

        setattr(run, _WRAPPED, True)
        return run

    # -- generation log ------------------------------------------------------------

    def _wrap_task_done(self) -> None:
        queue = self.server.prompt_queue
        original = queue.task_done
        if getattr(original, _WRAPPED, False):
            return

        @functools.wraps(original)
        def task_done(item_id: Any, history_result: Any, *args: Any, **kw: Any) -> Any:
            item = queue.currently_running.get(item_id)
            out = original(item_id, history_result, *args, **kw)
            status = args[0] if args else kw.get("status")
            ok = getattr(status, "status_str", None) == "success"
            if item is not None and ok:
                prompt_id = str(item[1])
                verdict = self.approved.get(prompt_id)
                if verdict is not None:
                    outputs = dict(history_result.get("outputs", {}))
                    self.executor.submit(self.log_generation, prompt_id, verdict, outputs)
            return out

        setattr(task_done, _WRAPPED, True)
        queue.task_done = task_done

    def log_generation(self, prompt_id: str, verdict: Verdict, outputs: dict[str, Any]) -> None:
        """Append one audit record for an executed Sonic prompt (never raises)."""
        from ..audit import AuditLog
        from .records import generation_fields, saved_outputs

        try:
            files = saved_outputs(outputs, self.folder_paths.get_output_directory())
            fields = generation_fields(verdict, prompt_id, files)
            record = AuditLog(pack_dir(self.user_dir) / "generations.jsonl").append(fields)
            self.send("sonic_registry.logged", {"prompt_id": prompt_id, "seq": record.seq})
        except Exception:
            log.error(
                "sonic-registry could not log prompt %s:\n%s", prompt_id, traceback.format_exc()
            )

    # -- the check -----------------------------------------------------------------

    def check(self) -> dict[str, Any]:
        """Run the one-click check in the pack's thread (blocking) and return its JSON."""
        return self.executor.submit(self._check).result()

    def _check(self) -> dict[str, Any]:
        from .check import run_check

        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] > 0.25 or done == total:
                last[0] = now
                self.send("sonic_registry.progress", {"done": done, "total": total})

        return run_check(self.context(), progress)

    def statuses(self) -> dict[str, Any]:
        from .check import file_statuses

        return self.executor.submit(lambda: file_statuses(self.context())).result()

    def add_routes(self) -> None:
        """``GET /sonic_registry/check`` and ``GET /sonic_registry/files``, as JSON."""
        from aiohttp import web

        from ..errors import SonicRegistryError

        def route(work: Callable[[], dict[str, Any]]) -> Callable[[Any], Any]:
            async def handler(request: Any) -> Any:
                try:
                    body = await asyncio.get_running_loop().run_in_executor(None, work)
                except SonicRegistryError as exc:  # the config or a folder: one line
                    return web.json_response({"ok": False, "error": str(exc)}, status=400)
                except Exception as exc:
                    log.error("sonic-registry check failed:\n%s", traceback.format_exc())
                    error = f"{type(exc).__name__}: {exc}"
                    return web.json_response({"ok": False, "error": error}, status=500)
                return web.json_response(body)

            return handler

        def files() -> dict[str, Any]:
            return {"ok": True, "locale": self.locale(), "files": self.statuses()}

        # Added to ComfyUI's route table; its aiohttp app is built after the packs load.
        self.server.routes.get("/sonic_registry/check")(route(self.check))
        self.server.routes.get("/sonic_registry/files")(route(files))


_PACK: Pack | None = None


def setup() -> Pack:
    """Hook into the running ComfyUI (called by the pack's ``__init__.py``); idempotent."""
    global _PACK
    if _PACK is None:
        server = importlib.import_module("server").PromptServer.instance
        _PACK = Pack(
            server,
            importlib.import_module("execution"),
            importlib.import_module("folder_paths"),
            importlib.import_module("nodes"),
        )
        _PACK.install()
        _PACK.add_routes()
        log.info("sonic-registry: guarding Sonic prompts")
    return _PACK


class PackExports(NamedTuple):
    """What a pack folder's ``__init__.py`` hands to ComfyUI's loader."""

    NODE_CLASS_MAPPINGS: dict[str, Any]
    NODE_DISPLAY_NAME_MAPPINGS: dict[str, str]
    WEB_DIRECTORY: str | None


_SERVED_FROM: str | None = None


def pack_exports(pack_init: str) -> PackExports:
    """Hook into ComfyUI for the pack folder holding ``pack_init``; what it should export.

    Both ways of installing call this: the ``__init__.py`` written by
    ``sonic-registry comfyui install`` and the root ``__init__.py`` of a git
    clone in ``custom_nodes/``. Whichever folder ComfyUI loads first serves the
    pack; a second copy registers nothing (so the editor never runs the web
    extension twice) and one warning names both folders. The code that runs is
    always the one ``sonic_registry`` module of the process: the installed
    library when there is one, else the clone's (a clone whose own code is
    shadowed by an installed library says so once).
    """
    global _SERVED_FROM
    folder = Path(pack_init).resolve().parent
    if _SERVED_FROM is not None and str(folder) != _SERVED_FROM:
        log.warning(
            "sonic-registry: the pack is already served from %s; %s registers nothing "
            "(remove one of the two)",
            _SERVED_FROM,
            folder,
        )
        return PackExports({}, {}, None)
    running = Path(__file__).resolve().parents[1]
    own = folder / "sonic_registry"
    if own.is_dir() and own.resolve() != running:
        log.warning(
            "sonic-registry: %s runs the sonic-registry installed in ComfyUI's Python (%s), "
            "not this clone's code; `pip uninstall sonic-registry` there to run the clone",
            folder,
            running,
        )
    _SERVED_FROM = str(folder)
    setup()
    return PackExports(NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, WEB_DIRECTORY)


class SonicRegistryCheck:
    """A node that runs the one-click check and shows the table."""

    CATEGORY = "SONIC"
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("report_json",)
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {}}

    @classmethod
    def IS_CHANGED(cls) -> float:
        return float("nan")  # always re-run: files may have changed

    def run(self) -> dict[str, Any]:
        import json

        from .check import render_text

        report = setup().check()
        return {"ui": {"text": [render_text(report)]}, "result": (json.dumps(report),)}


NODE_CLASS_MAPPINGS = {"SonicRegistryCheck": SonicRegistryCheck}
NODE_DISPLAY_NAME_MAPPINGS = {"SonicRegistryCheck": "Sonic: check models (sonic-registry)"}
