"""``sonic-registry check-params``: judge generation parameters against a verified release."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ._common import echo, emit_json, handle_errors, json_option
from .registry import SourceOptions, registry_root_option, require_signed_option
from .release import load_trust, trust_options

if TYPE_CHECKING:
    from ..bundle import VerifiedStatement
    from ..params import Report

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
@registry_root_option
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
@click.option(
    "--workflow",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Judge the parameters of this ComfyUI workflow or pipeline.toml, as `resolve` and "
    "the workflows hook do. Ranges: the release its files resolve to (with --models-dir), "
    "else the built-in catalog's published Sonic release.",
)
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --workflow: the models folder its file names are relative to.",
)
@click.option(
    "--no-builtin-catalog",
    is_flag=True,
    help="With --workflow: only signed releases from --registry count.",
)
@require_signed_option
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
    workflow: Path | None,
    models_dir: Path | None,
    no_builtin_catalog: bool,
    require_signed: bool,
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
    from ..errors import UsageError
    from ..params import check_params, parse_assignment
    from ..trust import channel_label

    params: dict[str, object] = {}
    for text in assignments:
        name, value = parse_assignment(text)
        if name in params:
            raise UsageError("--set", f"{name} given twice")
        params[name] = value
    _refuse_inapplicable(
        workflow is not None,
        release=release_dir is not None,
        allow_unsigned=allow_unsigned,
        models_dir=models_dir is not None,
        no_builtin_catalog=no_builtin_catalog,
    )
    source = SourceOptions(registry_location, trust_path, public_keys, no_builtin_catalog)
    if workflow is not None:
        # A usage error before the workflow is loaded and its files hashed.
        if params or audio is not None or duration is not None or model_version:
            raise UsageError("--workflow", "the values come from the workflow: drop --set/--audio")
        report, channel = _workflow_report(
            workflow,
            models_dir,
            source,
            require_signed=require_signed,
        )
    else:
        verified = _release_of(model_version, release_dir, source, allow_unsigned)
        report = check_params(
            verified.release, params, audio=audio, duration=duration, audio_hint="--audio FILE"
        )
        channel = verified.channel
    code = 0 if report.ok else 1
    if json_output:
        emit_json({**report.to_dict(), "exit_code": code, "channel": channel})
    else:
        if channel != "official":
            label = channel_label(channel, long=True)
            echo(f"note: {report.release_id} is {label}", err=True)
        for item in report.items:
            echo(f"{item.status}: {item.message}")
        echo(
            f"{report.release_id}: {len(report.items) - len(report.warnings) - len(report.errors)}"
            f" ok, {len(report.warnings)} warning(s), {len(report.errors)} error(s)"
        )
    sys.exit(code)


def _refuse_inapplicable(workflow: bool, **given: bool) -> None:
    """One usage line (exit 2) for a flag that would be silently ignored: ``--release``
    and ``--allow-unsigned`` choose the release for ``--set`` values, which a workflow
    never uses (its ranges come from the release its files resolve to); ``--models-dir``
    and ``--no-builtin-catalog`` only say how a workflow is resolved."""
    from ..errors import UsageError

    why = {
        "release": "with --workflow the ranges are those of the release its files resolve "
        "to (else the built-in catalog's published one); judge --set values against "
        "--release instead",
        "allow_unsigned": "it accepts an unsigned --release bundle; with --workflow the "
        "ranges come from a signed release or the built-in catalog",
    }
    only_with = ("models_dir", "no_builtin_catalog")
    unknown = set(given) - set(why) - set(only_with)
    if unknown:  # a misspelled flag name would otherwise never be refused
        raise TypeError(f"_refuse_inapplicable: no rule for {sorted(unknown)}")
    for name, was_given in given.items():
        flag = "--" + name.replace("_", "-")
        if was_given and workflow and name in why:
            raise UsageError(flag, f"does not apply with --workflow: {why[name]}")
        if was_given and not workflow and name in only_with:
            raise UsageError(flag, "applies only with --workflow FILE (how a workflow resolves)")


def _release_of(
    model_version: tuple[str, ...],
    release_dir: Path | None,
    source: SourceOptions,
    allow_unsigned: bool,
) -> VerifiedStatement:
    """The release whose ranges count: --release DIR verified, or MODEL VERSION of --registry.

    The ranges are only as good as the signature over them: verify first,
    without recording the serial (a check is not an install).
    """
    from ..bundle import verify_bundle
    from ..errors import UsageError

    if (release_dir is None) == (source.location is None):
        raise UsageError(
            "", "give either --release DIR, --registry REG MODEL VERSION or --workflow FILE"
        )
    if source.location is not None:
        if len(model_version) != 2:
            raise UsageError("--registry", "expected MODEL VERSION after the options")
        from .registry import _open

        with _open(source.location, source.trust_path, source.public_keys) as reg:
            return reg.get(*model_version)
    if model_version:
        raise UsageError("--release", f"unexpected arguments {' '.join(model_version)}")
    assert release_dir is not None
    return verify_bundle(
        release_dir,
        load_trust(source.trust_path, source.public_keys),
        allow_unsigned=allow_unsigned,
        record_serial=False,
    )


def _workflow_report(
    workflow: Path,
    models_dir: Path | None,
    source: SourceOptions,
    *,
    require_signed: bool = False,
) -> tuple[Report, str]:
    """``params.check_graph_params`` on a workflow: the judgement resolve and the hook give."""
    from ..catalog import load_catalog
    from ..errors import UsageError, raise_all
    from ..identify import unsigned_refusal
    from ..params import check_graph_params
    from ..resolver import analyze_graph, load_graph
    from .registry import open_known

    graph = load_graph(workflow)
    with open_known(source) as known:
        if models_dir is not None:
            res = analyze_graph(graph, known, models_dir, check_params=False)
            if res.release is None:
                raise UsageError(
                    str(workflow),
                    "its files are in no known release, so no ranges apply "
                    "(run `sonic-registry resolve` for the details)",
                )
            statement = res.release
        else:
            published = load_catalog().releases[0]
            statement = known.get(published.model, published.version)
    if require_signed:
        raise_all(unsigned_refusal(str(workflow), [statement]))
    return check_graph_params(statement.release, graph), statement.channel
