"""A small stand-in of the ComfyUI server interfaces the pack uses (no ComfyUI needed).

It copies the behaviour of ComfyUI 0.3.64 where the pack depends on it:

* ``server.PromptServer.post_prompt``: ``trigger_on_prompt`` (an exception in
  a handler is logged and *swallowed*, the prompt goes on), then
  ``execution.validate_prompt`` looked up on the module at request time,
  400 with ``error`` and ``node_errors`` when invalid, else the prompt is queued;
* ``execution.validate_prompt(prompt_id, prompt, partial)``: missing class,
  no output node -> invalid, else ``(True, None, outputs, {})``;
* ``PromptQueue``: ``put``/``get``/``task_done(item_id, history_result,
  status)`` with ``currently_running``;
* the prompt worker: sets ``server.last_prompt_id``, calls each node's
  ``FUNCTION`` in dependency order, then ``task_done`` with status
  ``success`` or ``error`` (an exception in a node fails the prompt);
* ``send_sync(event, data, sid)`` and a route table.

:func:`install` puts these modules into ``sys.modules`` under ComfyUI's
names (``server``, ``execution``, ``folder_paths``, ``nodes``) with node
classes for the real workflows' node types (ComfyUI_Sonic's three with their
real inputs, and the core loaders and savers they use); nothing loads a model.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import traceback
import types
import uuid
from collections import namedtuple
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("comfyui_standin")
ExecutionStatus = namedtuple("ExecutionStatus", ["status_str", "completed", "messages"])


class RouteTable:
    def __init__(self) -> None:
        self.handlers: dict[tuple[str, str], Callable[..., Any]] = {}

    def get(self, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def add(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.handlers[("GET", path)] = fn
            return fn

        return add


class PromptQueue:
    def __init__(self, server: PromptServer) -> None:
        self.server = server
        self.queue: list[tuple[Any, ...]] = []
        self.currently_running: dict[int, tuple[Any, ...]] = {}
        self.history: dict[str, Any] = {}
        self.task_counter = 0

    def put(self, item: tuple[Any, ...]) -> None:
        self.queue.append(item)

    def get(self) -> tuple[tuple[Any, ...], int] | None:
        if not self.queue:
            return None
        item = self.queue.pop(0)
        i = self.task_counter
        self.currently_running[i] = item
        self.task_counter += 1
        return item, i

    def task_done(self, item_id: int, history_result: dict[str, Any], status: Any) -> None:
        prompt = self.currently_running.pop(item_id)
        self.history[prompt[1]] = {"prompt": prompt, "outputs": {}, "status": status._asdict()}
        self.history[prompt[1]].update(history_result)


class PromptServer:
    instance: PromptServer | None = None

    def __init__(self, execution: types.ModuleType) -> None:
        PromptServer.instance = self
        self.execution = execution
        self.on_prompt_handlers: list[Callable[[dict[str, Any]], dict[str, Any]]] = []
        self.routes = RouteTable()
        self.sent: list[tuple[str, Any, str | None]] = []
        self.prompt_queue = PromptQueue(self)
        self.number = 0
        self.last_prompt_id: str | None = None
        self.client_id: str | None = None

    def add_on_prompt_handler(self, handler: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
        self.on_prompt_handlers.append(handler)

    def trigger_on_prompt(self, json_data: dict[str, Any]) -> dict[str, Any]:
        for handler in self.on_prompt_handlers:
            try:
                json_data = handler(json_data)
            except Exception:  # ComfyUI logs and carries on: the prompt still runs
                log.warning("[ERROR] An error occurred during the on_prompt_handler processing")
                log.warning(traceback.format_exc())
        return json_data

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        self.sent.append((event, data, sid))

    async def post_prompt(self, json_data: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """server.py's ``post_prompt``: (HTTP status, JSON body)."""
        json_data = self.trigger_on_prompt(json_data)
        number = self.number
        self.number += 1
        if "prompt" not in json_data:
            return 400, {"error": {"type": "no_prompt"}, "node_errors": {}}
        prompt = json_data["prompt"]
        prompt_id = str(json_data.get("prompt_id", uuid.uuid4()))
        valid = await self.execution.validate_prompt(prompt_id, prompt, None)
        extra_data = dict(json_data.get("extra_data", {}))
        if "client_id" in json_data:
            extra_data["client_id"] = json_data["client_id"]
        if valid[0]:
            self.prompt_queue.put((number, prompt_id, prompt, extra_data, valid[2]))
            return 200, {"prompt_id": prompt_id, "number": number, "node_errors": valid[3]}
        return 400, {"error": valid[1], "node_errors": valid[3]}

    async def get(self, path: str) -> Any:
        return await self.routes.handlers[("GET", path)](None)

    def run_next(self, nodes: types.ModuleType) -> str | None:
        """main.py's prompt worker, one item: execute the nodes, then ``task_done``."""
        got = self.prompt_queue.get()
        if got is None:
            return None
        item, item_id = got
        prompt_id, prompt = item[1], item[2]
        self.last_prompt_id = prompt_id
        results: dict[str, tuple[Any, ...]] = {}
        outputs: dict[str, Any] = {}
        ok = True
        try:
            for node_id in _order(prompt):
                spec = prompt[node_id]
                cls = nodes.NODE_CLASS_MAPPINGS[spec["class_type"]]
                kwargs = {
                    k: results[str(v[0])][v[1]] if isinstance(v, list) else v
                    for k, v in spec["inputs"].items()
                }
                out = getattr(cls(), cls.FUNCTION)(**kwargs)
                if isinstance(out, dict):
                    outputs[node_id] = out.get("ui", {})
                    out = out.get("result", ())
                results[node_id] = tuple(out)
        except Exception as exc:
            ok = False
            self.send_sync("execution_error", {"prompt_id": prompt_id, "exception": str(exc)})
        status = ExecutionStatus("success" if ok else "error", ok, [])
        self.prompt_queue.task_done(item_id, {"outputs": outputs, "meta": {}}, status=status)
        return prompt_id


def _order(prompt: dict[str, Any]) -> list[str]:
    done: list[str] = []

    def visit(node_id: str) -> None:
        if node_id in done:
            return
        for v in prompt[node_id]["inputs"].values():
            if isinstance(v, list):
                visit(str(v[0]))
        done.append(node_id)

    for node_id in prompt:
        visit(node_id)
    return done


async def validate_prompt(prompt_id: str, prompt: dict[str, Any], partial: Any) -> Any:
    """execution.py's checks before input validation (class exists, an output node)."""
    nodes = sys.modules["nodes"]
    outputs = []
    for node_id, spec in prompt.items():
        if "class_type" not in spec:
            return (False, {"type": "invalid_prompt"}, [], {})
        cls = nodes.NODE_CLASS_MAPPINGS.get(spec["class_type"])
        if cls is None:
            return (False, {"type": "invalid_prompt", "details": f"#{node_id}"}, [], {})
        if getattr(cls, "OUTPUT_NODE", False):
            outputs.append(node_id)
    if not outputs:
        return (False, {"type": "prompt_no_outputs"}, [], {})
    return (True, None, outputs, {})


# -- node classes: the real node types' inputs, no model work ---------------------


def _node(
    name: str,
    required: dict[str, Any],
    returns: tuple[str, ...],
    fn: Callable[..., Any] | None = None,
) -> type:
    def run(self: Any, **kwargs: Any) -> Any:
        return fn(**kwargs) if fn is not None else tuple(f"{name}:{r}" for r in returns)

    return type(
        name,
        (),
        {
            "INPUT_TYPES": classmethod(lambda cls: {"required": required}),
            "RETURN_TYPES": returns,
            "FUNCTION": "run",
            "CATEGORY": "standin",
            "run": run,
        },
    )


def _save_video(output_dir: Path) -> Callable[..., Any]:
    def save(video: Any, filename_prefix: str, format: str, codec: str) -> Any:
        sub = Path(filename_prefix).parent
        (output_dir / sub).mkdir(parents=True, exist_ok=True)
        name = f"{Path(filename_prefix).name}_{uuid.uuid4().hex[:8]}.mp4"
        (output_dir / sub / name).write_bytes(f"video from {video}".encode())
        return {"ui": {"images": [{"filename": name, "subfolder": str(sub), "type": "output"}]}}

    return save


def node_classes(output_dir: Path) -> dict[str, type]:
    classes = {
        "SONICTLoader": _node(
            "SONICTLoader",
            {
                "model": ("MODEL",),
                "sonic_unet": (["none"],),
                "ip_audio_scale": ("FLOAT",),
                "use_interframe": ("BOOLEAN",),
                "dtype": (["fp16", "fp32", "bf16"],),
            },
            ("MODEL_SONIC", "DTYPE"),
        ),
        "SONIC_PreData": _node(
            "SONIC_PreData",
            {
                "clip_vision": ("CLIP_VISION",),
                "vae": ("VAE",),
                "audio": ("AUDIO",),
                "image": ("IMAGE",),
                "weight_dtype": ("DTYPE",),
                "min_resolution": ("INT",),
                "duration": ("FLOAT",),
                "expand_ratio": ("FLOAT",),
            },
            ("SONIC_PREDATA",),
        ),
        "SONICSampler": _node(
            "SONICSampler",
            {
                "model": ("MODEL_SONIC",),
                "data_dict": ("SONIC_PREDATA",),
                "seed": ("INT",),
                "inference_steps": ("INT",),
                "dynamic_scale": ("FLOAT",),
                "fps": ("FLOAT",),
            },
            ("IMAGE", "FLOAT"),
        ),
        "ImageOnlyCheckpointLoader": _node(
            "ImageOnlyCheckpointLoader", {"ckpt_name": ([],)}, ("MODEL", "CLIP_VISION", "VAE")
        ),
        "LoadImage": _node("LoadImage", {"image": ([],)}, ("IMAGE", "MASK")),
        "LoadAudio": _node("LoadAudio", {"audio": ([],)}, ("AUDIO",)),
        "CreateVideo": _node("CreateVideo", {"images": ("IMAGE",), "fps": ("FLOAT",)}, ("VIDEO",)),
        "SaveVideo": _node(
            "SaveVideo",
            {
                "video": ("VIDEO",),
                "filename_prefix": ("STRING",),
                "format": (["mp4"],),
                "codec": (["h264"],),
            },
            (),
            _save_video(output_dir),
        ),
    }
    classes["SaveVideo"].OUTPUT_NODE = True  # type: ignore[attr-defined]
    return classes


class StandIn:
    """The installed stand-in: its modules and directories."""

    def __init__(self, base: Path) -> None:
        self.base = base
        for d in ("models", "input", "output", "user", "temp"):
            (base / d).mkdir(parents=True, exist_ok=True)
        self.folder_paths = types.ModuleType("folder_paths")
        self.folder_paths.models_dir = str(base / "models")  # type: ignore[attr-defined]
        # ComfyUI's folder table (what extra_model_paths.yaml and custom nodes add to).
        self.folder_paths.folder_names_and_paths = {  # type: ignore[attr-defined]
            name: ([str(base / "models" / name)], set()) for name in ("checkpoints", "sonic")
        }
        for name in ("user", "input", "output", "temp"):
            value = str(base / name)
            setattr(self.folder_paths, f"get_{name}_directory", lambda v=value: v)
        self.nodes = types.ModuleType("nodes")
        self.nodes.NODE_CLASS_MAPPINGS = node_classes(base / "output")  # type: ignore[attr-defined]
        self.execution = types.ModuleType("execution")
        self.execution.validate_prompt = validate_prompt  # type: ignore[attr-defined]
        self.execution.PromptQueue = PromptQueue  # type: ignore[attr-defined]
        self.server_module = types.ModuleType("server")
        self.server_module.PromptServer = PromptServer  # type: ignore[attr-defined]
        self.server = PromptServer(self.execution)

    def modules(self) -> dict[str, types.ModuleType]:
        return {
            "server": self.server_module,
            "execution": self.execution,
            "folder_paths": self.folder_paths,
            "nodes": self.nodes,
        }

    def post(self, prompt: dict[str, Any], **extra: Any) -> tuple[int, dict[str, Any]]:
        return asyncio.run(self.server.post_prompt({"prompt": prompt, **extra}))

    def run_next(self) -> str | None:
        return self.server.run_next(self.nodes)

    def events(self, name: str) -> list[Any]:
        return [data for event, data, _sid in self.server.sent if event == name]
