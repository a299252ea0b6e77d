"""``comfyui install``: put the guard pack into an existing ComfyUI."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._common import echo, emit_json, handle_errors, json_option

__all__ = ["comfyui"]


@click.group()
def comfyui() -> None:
    """The ComfyUI pack: guard Sonic prompts, badge loaders, one-click check, generation log."""


@comfyui.command("install")
@click.option(
    "--comfyui-dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The ComfyUI folder (holding main.py and custom_nodes/).",
)
@click.option("--uninstall", is_flag=True, help="Remove the pack this command wrote.")
@json_option
@handle_errors
def comfyui_install(comfyui_dir: Path, uninstall: bool, json_output: bool) -> None:
    """Write the pack to COMFYUI_DIR/custom_nodes/sonic_registry_guard/ (idempotent).

    Run it with the sonic-registry installed in ComfyUI's own Python
    (`pip install sonic-registry` there first); restart ComfyUI afterwards.
    """
    from ..comfyui_pack.install import install_pack, uninstall_pack

    result = uninstall_pack(comfyui_dir) if uninstall else install_pack(comfyui_dir)
    if json_output:
        emit_json(
            {
                "ok": True,
                "path": str(result.path),
                "action": result.action,
                "changed": result.changed,
                "python": sys.executable,
            }
        )
        return
    echo(f"{result.action}: {result.path}")
    if result.changed:
        echo("restart ComfyUI to apply")
