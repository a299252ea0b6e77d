"""``sonic-registry convert``: a pinned pickle checkpoint -> safetensors, through weights_only."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import echo, emit_json, handle_errors, json_option
from .release import load_trust, trust_options

__all__ = ["convert"]


def _sha256_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    from ..hexdigest import is_sha256_hex

    if value is not None and not is_sha256_hex(value.lower()):
        raise click.BadParameter(f"expected 64 hex digits, found {value!r}")
    return value.lower() if value else None


def _release_pins(
    release: Path, trust_path: Path | None, public_keys: tuple[Path, ...]
) -> dict[str, str]:
    """sha256 -> label for every file a verified (signed, trusted) release lists."""
    from ..bundle import ENVELOPE_NAME, verify_envelope

    envelope = release / ENVELOPE_NAME if release.is_dir() else release
    statement = verify_envelope(envelope, load_trust(trust_path, public_keys))
    label = f"verified release {statement.release.release_id}"
    return {s.sha256: label for s in statement.subjects.values()}


@click.command()
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key",
    default=None,
    help="Convert only this entry of the checkpoint (e.g. state_dict; dots for nesting).",
)
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option(
    "--source-sha256",
    metavar="HEX",
    callback=_sha256_option,
    help="The SHA-256 the checkpoint's publisher gives; SOURCE must match it.",
)
@click.option(
    "--release",
    type=click.Path(path_type=Path),
    metavar="DIR",
    help="A signed release (bundle or envelope) that lists SOURCE's digest; checked with "
    "--trust/--public-key.",
)
@trust_options
@json_option
@handle_errors
def convert(
    source: Path,
    output: Path,
    key: str | None,
    force: bool,
    source_sha256: str | None,
    release: Path | None,
    trust_path: Path | None,
    public_keys: tuple[Path, ...],
    json_output: bool,
) -> None:
    """Convert a pickle checkpoint (.pth/.pt/.ckpt) to safetensors.

    Only a checkpoint whose SHA-256 is pinned is unpickled: by --source-sha256,
    by a verified --release, or by the built-in catalog of published files.
    It is read with torch's weights_only unpickler (torch >= 2.10, and
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD unset), must hold only tensors, and the
    output records the source's SHA-256. Needs torch (the `runtime` extra).
    """
    from ..convert import convert_checkpoint

    pins = _release_pins(release, trust_path, public_keys) if release is not None else {}
    result = convert_checkpoint(
        source, output, key=key, overwrite=force, source_sha256=source_sha256, pins=pins
    )
    if json_output:
        emit_json({"ok": True, **result.to_dict()})
        return
    echo(
        f"converted {result.source} (sha256 {result.source_digest.sha256}) -> "
        f"{result.output}: {result.tensors} tensors"
    )
