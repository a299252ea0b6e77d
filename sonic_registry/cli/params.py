"""``sonic-registry check-params``: judge generation parameters against a verified release."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._common import emit_json, handle_errors, json_option
from .release import load_trust, trust_options

if TYPE_CHECKING:
    from ..bundle import VerifiedStatement

__all__ = ["check_params_command"]


@click.command("check-params")
@click.argument("model_version", nargs=-1, metavar="[MODEL VERSION]")
@click.option(
    "--release",
    "release_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Model directory with a signed release.dsse.json; it is verified first.",
)
@click.option(
    "--registry",
    "registry_location",
    help="Take the ranges of MODEL VERSION from this registry (directory or URL) instead.",
)
@trust_options
@click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Accept a release no trusted key signed (its ranges are then unverified).",
)
@click.option(
    "--set",
    "assignments",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter value, e.g. --set inference_steps=25; repeatable.",
)
@click.option(
    "--audio",
    type=click.Path(path_type=Path),
    help="The driving audio file; its length is measured from the samples.",
)
@click.option("--duration", help="Requested video length in seconds; must match --audio.")
@json_option
@handle_errors
def check_params_command(
    model_version: tuple[str, ...],
    release_dir: Path | None,
    registry_location: str | None,
    trust_path: Path | None,
    public_keys: tuple[Path, ...],
    allow_unsigned: bool,
    assignments: tuple[str, ...],
    audio: Path | None,
    duration: str | None,
    json_output: bool,
) -> None:
    """Check parameters against the ranges the release was validated on.

    The release is --release DIR (verified like `verify`) or --registry REG
    MODEL VERSION (the newest serial whose envelope verifies).

    Inside the recommended range: ok. Inside the allowed range: a warning that
    names the risk. Outside: an error (exit 1). --duration must equal the
    length of --audio within the release's tolerance. Unknown names, wrong
    types, NaN/inf and unreadable audio are usage errors (exit 2).
    """
    from ..bundle import verify_bundle
    from ..errors import UsageError
    from ..params import check_params, parse_assignment
    from ..trust import channel_label

    params: dict[str, object] = {}
    for text in assignments:
        name, value = parse_assignment(text)
        if name in params:
            raise UsageError("--set", f"{name} given twice")
        params[name] = value
    # The ranges are only as good as the signature over them: verify first,
    # without recording the serial (a check is not an install).
    if (release_dir is None) == (registry_location is None):
        raise UsageError("", "give either --release DIR or --registry REG MODEL VERSION")
    if registry_location is not None:
        if len(model_version) != 2:
            raise UsageError("--registry", "expected MODEL VERSION after the options")
        from .registry import _open

        with _open(registry_location, trust_path, public_keys) as reg:
            verified: VerifiedStatement = reg.get(*model_version)
    else:
        if model_version:
            raise UsageError("--release", f"unexpected arguments {' '.join(model_version)}")
        assert release_dir is not None
        verified = verify_bundle(
            release_dir,
            load_trust(trust_path, public_keys),
            allow_unsigned=allow_unsigned,
            record_serial=False,
        )
    report = check_params(
        verified.release, params, audio=audio, duration=duration, audio_hint="--audio FILE"
    )
    code = 0 if report.ok else 1
    if json_output:
        emit_json({**report.to_dict(), "exit_code": code, "channel": verified.channel})
    else:
        if verified.channel != "official":
            label = channel_label(verified.channel, long=True)
            click.echo(f"note: {report.release_id} is {label}", err=True)
        for item in report.items:
            click.echo(f"{item.status}: {item.message}")
        click.echo(
            f"{report.release_id}: {len(report.items) - len(report.warnings) - len(report.errors)}"
            f" ok, {len(report.warnings)} warning(s), {len(report.errors)} error(s)"
        )
    sys.exit(code)
