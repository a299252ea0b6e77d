"""``sonic-registry convert``: a pickle checkpoint -> safetensors, through weights_only."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import emit_json, handle_errors, json_option

__all__ = ["convert"]


@click.command()
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key",
    default=None,
    help="Convert only this entry of the checkpoint (e.g. state_dict; dots for nesting).",
)
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@json_option
@handle_errors
def convert(source: Path, output: Path, key: str | None, force: bool, json_output: bool) -> None:
    """Convert a pickle checkpoint (.pth/.pt/.ckpt) to safetensors.

    The checkpoint is read with torch's weights_only unpickler (no code runs),
    must hold only tensors, and the output records the source's SHA-256.
    Needs torch (the `runtime` extra).
    """
    from ..convert import convert_checkpoint

    result = convert_checkpoint(source, output, key=key, overwrite=force)
    if json_output:
        emit_json({"ok": True, **result.to_dict()})
        return
    click.echo(
        f"converted {result.source} (sha256 {result.source_digest.sha256}) -> "
        f"{result.output}: {result.tensors} tensors"
    )
