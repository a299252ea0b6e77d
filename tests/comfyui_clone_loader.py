"""Run as a script (importing it does nothing): load a cloned pack as ComfyUI does.

``python comfyui_clone_loader.py CUSTOM_NODES_DIR COMFY_BASE PROMPT_JSON [PACK_DIR ...]``

Hides this venv's editable sonic-registry first (so, as in a ComfyUI Python
that only ran ``pip install -r requirements.txt``, ``sonic_registry`` is not
installed), puts the stand-in ComfyUI server (:mod:`comfyui_standin`) into
``sys.modules``, loads each pack folder by file location under ComfyUI's
module name, then posts the prompt. Prints one JSON line: what each folder
exported, where ``sonic_registry`` came from, and the ``/prompt`` answer.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import sys
import types
from pathlib import Path


def _editable(hook: object) -> bool:
    return str(getattr(hook, "__module__", "")).startswith("__editable__")


def hide_the_editable_install() -> bool:
    """Remove setuptools' editable finder; True when ``sonic_registry`` is then not importable."""
    sys.meta_path[:] = [f for f in sys.meta_path if not _editable(f)]
    sys.path_hooks[:] = [h for h in sys.path_hooks if not _editable(h)]
    sys.path[:] = [p for p in sys.path if not p.startswith("__editable__")]
    sys.path_importer_cache.clear()
    return importlib.util.find_spec("sonic_registry") is None


def load_custom_node(module_path: str) -> types.ModuleType:
    """ComfyUI 0.3.64 ``nodes.load_custom_node`` for a folder, minus its bookkeeping."""
    sys_module_name = module_path.replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(
        sys_module_name, os.path.join(module_path, "__init__.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[sys_module_name] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    custom_nodes, base, prompt = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    hidden = hide_the_editable_install()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from comfyui_standin import StandIn

    standin = StandIn(base)
    sys.modules.update(standin.modules())
    web = types.ModuleType("aiohttp.web")
    web.json_response = lambda body, status=200: (status, body)  # type: ignore[attr-defined]
    aiohttp = types.ModuleType("aiohttp")
    aiohttp.web = web  # type: ignore[attr-defined]
    sys.modules.setdefault("aiohttp", aiohttp)
    sys.modules.setdefault("aiohttp.web", web)
    packs = {}
    for name in sys.argv[4:]:
        module_path = str(custom_nodes / name)
        module = load_custom_node(module_path)
        web_dir = getattr(module, "WEB_DIRECTORY", None)
        packs[name] = {
            "nodes": sorted(getattr(module, "NODE_CLASS_MAPPINGS", None) or {}),
            "web": os.path.abspath(os.path.join(module_path, web_dir)) if web_dir else None,
        }
    import sonic_registry

    status, body = asyncio.run(standin.server.post_prompt({"prompt": json.loads(prompt)}))
    out = {"hidden": hidden, "library": sonic_registry.__file__, "packs": packs}
    print(json.dumps({**out, "status": status, "body": body}))


if __name__ == "__main__":
    main()
