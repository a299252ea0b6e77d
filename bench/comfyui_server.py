"""A real ComfyUI server for the end-to-end test and the guard benchmark.

:func:`start_server` lays out a private ComfyUI folder (the checkout's code,
linked; its own ``custom_nodes``, ``models``, ``input``, ``output`` and
``user``) and runs it with ``--cpu`` on 127.0.0.1 and ``--base-directory``, so
the checkout itself is never written to; this repository comes first on
``PYTHONPATH``, so the pack runs the code under test.

:func:`ui_to_api` turns a UI-format workflow into the API prompt the editor
would POST.

The editor names each node's ``widgets_values`` by the node's widget inputs
(in ``/object_info`` order), skipping the "control after generate" value after
a seed, and replaces inputs that are linked by ``[source_id, slot]``; muted
and bypassed nodes are left out. ``widget_names(node_type)`` gives the widget
input names: from a live server's ``/object_info`` in the end-to-end test,
from :data:`WIDGETS` otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sonic_registry.workflows.comfyui import NODE_SPECS
from sonic_registry.workflows.comfyui_nodes import name_widget_values

#: Widget inputs of the core nodes the real workflows use (ComfyUI 0.3.64 /object_info).
WIDGETS: Mapping[str, tuple[str, ...]] = {
    "LoadImage": ("image",),
    "LoadAudio": ("audio",),
    "CreateVideo": ("fps",),
    "SaveVideo": ("filename_prefix", "format", "codec"),
}


def default_widget_names(node_type: str) -> tuple[str, ...]:
    if node_type in WIDGETS:
        return WIDGETS[node_type]
    spec = NODE_SPECS.get(node_type)
    return spec.widgets if spec is not None else ()


def widget_names_from_object_info(info: Mapping[str, Any]) -> Callable[[str], tuple[str, ...]]:
    widget_types = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}

    def names(node_type: str) -> tuple[str, ...]:
        spec = info.get(node_type, {}).get("input", {})
        out = []
        for group in ("required", "optional"):
            for name, decl in spec.get(group, {}).items():
                kind = decl[0] if isinstance(decl, list) and decl else None
                if isinstance(kind, list) or kind in widget_types:
                    out.append(name)
        return tuple(out)

    return names


def ui_to_api(
    doc: Mapping[str, Any],
    widget_names: Callable[[str], tuple[str, ...]] = default_widget_names,
) -> dict[str, Any]:
    links = {
        entry[0]: (str(entry[1]), entry[2]) for entry in doc["links"] if isinstance(entry, list)
    }
    prompt: dict[str, Any] = {}
    for node in doc["nodes"]:
        if node.get("mode", 0) in (2, 4):
            continue
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values") or []
        if isinstance(values, dict):
            inputs.update(values)
        else:
            inputs.update(name_widget_values(widget_names(node["type"]), values)[0])
        for slot in node.get("inputs") or []:
            if slot.get("link") is not None:
                inputs[slot["name"]] = list(links[slot["link"]])
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt


ROOT = Path(__file__).resolve().parent.parent
#: A stand-in of ComfyUI_Sonic: its three node types, real inputs, no model work.
STANDIN_PACK = ROOT / "tests" / "data" / "comfyui" / "sonic_standin_pack.py"
_OWN_DIRS = ("custom_nodes", "models", "input", "output", "user", "temp")


@dataclass
class Server:
    base: Path
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=120) as r:
            return json.loads(r.read())

    def post_prompt(self, prompt: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        body = json.dumps({"prompt": prompt, "client_id": "sonic-registry"}).encode()
        req = urllib.request.Request(
            self.url + "/prompt", body, {"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def wait_done(self, prompt_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            entry = self.get(f"/history/{prompt_id}").get(prompt_id)
            status = entry.get("status", {}) if entry else {}
            if status.get("status_str") in ("success", "error"):
                return dict(entry)
            time.sleep(0.2)
        raise RuntimeError(f"prompt {prompt_id} did not finish:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "SONIC_REGISTRY_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def layout(checkout: Path, base: Path, *, standin: bool = True) -> Path:
    """A private ComfyUI folder at ``base`` running ``checkout``'s code."""
    base.mkdir(parents=True)
    for entry in checkout.iterdir():
        if entry.name not in (*_OWN_DIRS, ".git"):
            (base / entry.name).symlink_to(entry)
    for name in _OWN_DIRS:
        (base / name).mkdir()
    if standin:
        pack = base / "custom_nodes" / "ComfyUI_Sonic_standin"
        pack.mkdir()
        shutil.copyfile(STANDIN_PACK, pack / "__init__.py")
    return base


def install_command(python: str) -> list[str]:
    """The documented ``sonic-registry`` command of ComfyUI's Python."""
    script = Path(python).parent / "sonic-registry"
    if script.is_file():
        return [str(script)]
    return [python, "-c", "from sonic_registry.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    base: Path,
    python: str,
    log: Path,
    *,
    timeout: float = 180,
    env: Mapping[str, str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> Server:
    """Start ComfyUI (``--cpu``, 127.0.0.1, a free port) and wait until it answers.

    ``env`` defaults to :func:`server_env` (this checkout first on ``PYTHONPATH``);
    ``extra_args`` go to ``main.py`` (``--extra-model-paths-config FILE``).
    """
    port = _free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                python,
                "main.py",
                "--cpu",
                "--listen",
                "127.0.0.1",
                "--port",
                str(port),
                "--base-directory",
                str(base),
                *extra_args,
            ],
            cwd=base,
            env=dict(server_env() if env is None else env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    srv = Server(base, f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + timeout
    while True:
        try:
            srv.get("/system_stats")
            return srv
        except (OSError, ValueError):
            if process.poll() is not None or time.monotonic() > deadline:
                srv.stop()
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"ComfyUI did not start:\n{tail}") from None
            time.sleep(0.5)


def comfyui_python() -> str:
    return os.environ.get("COMFYUI_PYTHON", sys.executable)
