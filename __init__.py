"""ComfyUI's entry point for a git clone: ``git clone <repo> ComfyUI/custom_nodes/sonic-registry``.

ComfyUI imports this file by its location (``nodes.load_custom_node``) and
reads ``NODE_CLASS_MAPPINGS``, ``NODE_DISPLAY_NAME_MAPPINGS`` and
``WEB_DIRECTORY``. Anywhere else (pytest, ``pip install -e .``, a plain
import) it does nothing: ComfyUI is recognised by its running ``PromptServer``.
It is not part of the ``sonic_registry`` package and never in the wheel.

Inside ComfyUI it makes the clone's ``sonic_registry`` importable when
ComfyUI's Python has none installed (that one package only, not the clone's
other folders), then hands over to
:func:`sonic_registry.comfyui_pack.glue.pack_exports`, the function the pack
written by ``sonic-registry comfyui install`` calls too.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
from pathlib import Path
from typing import Any


def _in_comfyui() -> bool:
    server = sys.modules.get("server")
    return getattr(getattr(server, "PromptServer", None), "instance", None) is not None


def _import_the_clone() -> None:
    """Import ``sonic_registry`` from this folder unless ComfyUI's Python has one installed."""
    if importlib.util.find_spec("sonic_registry") is not None:
        return
    folder = str(Path(__file__).resolve().parent)
    spec = importlib.machinery.PathFinder.find_spec("sonic_registry", [folder])
    if spec is None or spec.loader is None:
        raise ImportError(f"{folder}: no sonic_registry package in this clone")
    module = importlib.util.module_from_spec(spec)
    sys.modules["sonic_registry"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["sonic_registry"]
        raise


NODE_CLASS_MAPPINGS: dict[str, Any] | None = None
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] | None = None
WEB_DIRECTORY: str | None = None

if _in_comfyui():
    _import_the_clone()
    from sonic_registry.comfyui_pack.glue import pack_exports

    NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, WEB_DIRECTORY = pack_exports(__file__)
