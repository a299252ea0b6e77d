"""``sonic-registry comfyui install``: write (or remove) the pack under ``custom_nodes/``.

The pack is one ``__init__.py`` that imports :mod:`sonic_registry.comfyui_pack.glue`
from the ``sonic-registry`` installed in ComfyUI's Python, so upgrading the
library upgrades the pack; its web extension is served from the library's
package data (``WEB_DIRECTORY`` is an absolute path). A git clone of the
repository in ``custom_nodes/`` calls the same
:func:`~sonic_registry.comfyui_pack.glue.pack_exports` from its root
``__init__.py``. Installing twice changes
nothing; a folder of the same name that this command did not write is never
overwritten or removed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UnreadableInputError, UsageError

__all__ = ["PACK_DIR_NAME", "PACK_INIT", "InstallResult", "install_pack", "uninstall_pack"]

PACK_DIR_NAME = "sonic_registry_guard"
_MARKER = "# written by `sonic-registry comfyui install`"
PACK_INIT = f'''{_MARKER}; remove with `sonic-registry comfyui install --uninstall`
"""sonic-registry for ComfyUI: refuse mixed Sonic releases, warn about non-official files."""

from sonic_registry.comfyui_pack.glue import pack_exports

NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, WEB_DIRECTORY = pack_exports(__file__)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
'''


@dataclass(frozen=True)
class InstallResult:
    path: Path
    changed: bool
    action: str  # installed / already installed / removed / not installed


def _custom_nodes(comfyui_dir: str | Path) -> Path:
    root = Path(comfyui_dir)
    nodes = root / "custom_nodes"
    if not (root / "main.py").is_file() or not nodes.is_dir():
        raise UnreadableInputError(
            str(root), "expected a ComfyUI folder (with main.py and custom_nodes/)"
        )
    return nodes


def _ours(init: Path) -> bool:
    try:
        return init.read_text("utf-8").startswith(_MARKER)
    except (OSError, UnicodeDecodeError):
        return False


def install_pack(comfyui_dir: str | Path) -> InstallResult:
    """Write ``custom_nodes/sonic_registry_guard/__init__.py`` (idempotent)."""
    from ..fileio import atomic_write_text

    pack = _custom_nodes(comfyui_dir) / PACK_DIR_NAME
    init = pack / "__init__.py"
    if pack.exists() and not _ours(init):
        raise UsageError(str(pack), "exists and was not written by sonic-registry; not touched")
    if init.is_file() and init.read_text("utf-8") == PACK_INIT:
        return InstallResult(pack, False, "already installed")
    pack.mkdir(exist_ok=True)
    atomic_write_text(init, PACK_INIT)
    return InstallResult(pack, True, "installed")


def uninstall_pack(comfyui_dir: str | Path) -> InstallResult:
    """Remove the pack folder this command wrote (nothing else)."""
    pack = _custom_nodes(comfyui_dir) / PACK_DIR_NAME
    init = pack / "__init__.py"
    if not pack.exists():
        return InstallResult(pack, False, "not installed")
    if not _ours(init):
        raise UsageError(str(pack), "was not written by sonic-registry; not removed")
    init.unlink()
    cache = pack / "__pycache__"
    if cache.is_dir():
        for f in cache.iterdir():
            f.unlink()
        cache.rmdir()
    try:
        pack.rmdir()
    except OSError as exc:
        raise UsageError(
            str(pack), f"not empty after removing the pack's files: {exc.strerror}"
        ) from None
    return InstallResult(pack, True, "removed")
