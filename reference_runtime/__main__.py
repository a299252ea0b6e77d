"""``python -m reference_runtime``: generate (only from verified bundles), build weights, demo."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sonic_registry.cli._common import echo, emit_json, handle_errors, json_option

from . import __version__

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="reference_runtime")
def main() -> None:
    """A tiny Sonic-shaped model (not a photoreal generator) that runs only signed bundles.

    Exit codes: 0 ok, 1 a check refused the run, 2 usage or unreadable input.
    """


def _component(values: tuple[str, ...]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for text in values:
        role, sep, path = text.partition("=")
        if not sep or not role or not path:
            raise click.BadParameter(f"expected ROLE=BUNDLE_DIR, found {text!r}")
        out[role] = Path(path)
    return out


@main.command()
@click.option("--bundle", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--image", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--audio", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trust", type=click.Path(dir_okay=False, path_type=Path), help="trust.json")
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Trust this public key (PEM); repeatable.",
)
@click.option(
    "--component",
    "components",
    multiple=True,
    metavar="ROLE=BUNDLE",
    help="Take ROLE from another verified bundle (refused unless the releases may mix).",
)
@click.option("--registry", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])
)
@click.option("--inference-steps", type=int, default=25, show_default=True)
@click.option("--dynamic-scale", type=float, default=1.0, show_default=True)
@click.option("--motion-scale", type=float, default=1.0, show_default=True)
@click.option("--min-resolution", type=int, default=256, show_default=True)
@click.option("--duration", type=float, help="Seconds; must match the audio's length.")
@click.option(
    "--audit-log",
    default="generations.jsonl",
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option(
    "--allow-mixed-unsafe",
    is_flag=True,
    help="Run a graph that mixes releases anyway (logged as UNSAFE). For demonstrations.",
)
@click.option("--allow-unsigned", is_flag=True, help="Run unsigned bundles, labelled unverified.")
@click.option(
    "--no-builtin-catalog",
    is_flag=True,
    help="Do not count the built-in catalog of the files Sonic's authors published.",
)
@click.option(
    "--runtime-version",
    default=__version__,
    hidden=True,
    help="Pretend to be another runtime version (to show the runtime check).",
)
@json_option
@handle_errors
def generate(
    bundle: Path,
    image: Path,
    audio: Path,
    out: Path,
    trust: Path | None,
    public_keys: tuple[Path, ...],
    components: tuple[str, ...],
    registry: Path | None,
    device: str,
    inference_steps: int,
    dynamic_scale: float,
    motion_scale: float,
    min_resolution: int,
    duration: float | None,
    audit_log: Path,
    allow_mixed_unsafe: bool,
    allow_unsigned: bool,
    no_builtin_catalog: bool,
    runtime_version: str,
    json_output: bool,
) -> None:
    """Make a talking-portrait MP4 from a verified bundle, a portrait and speech audio."""
    from .runtime import GenerateRequest
    from .runtime import generate as run

    request = GenerateRequest(
        bundle=bundle,
        image=image,
        audio=audio,
        out=out,
        trust=trust,
        public_keys=public_keys,
        components=_component(components),
        registry=registry,
        device=device,
        params={
            "inference_steps": inference_steps,
            "dynamic_scale": dynamic_scale,
            "motion_scale": motion_scale,
            "min_resolution": min_resolution,
        },
        duration=duration,
        allow_mixed_unsafe=allow_mixed_unsafe,
        allow_unsigned=allow_unsigned,
        builtin_catalog=not no_builtin_catalog,
        audit_log=audit_log,
        runtime_version=runtime_version,
    )
    # Every human-readable line goes through the library's terminal escaping (cli
    # _common.echo -> terminal.printable): paths and names come from untrusted bundles.
    result = run(request, echo=(lambda line: None) if json_output else echo)
    if json_output:
        emit_json(result.to_dict())


@main.command("build-release")
@click.argument("version")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@handle_errors
def build_release(version: str, directory: Path) -> None:
    """Write the deterministic weights and release.toml of a demo release (unsigned)."""
    from sonic_registry.errors import UsageError

    from .weights import RELEASES, write_bundle

    if version not in RELEASES:
        raise UsageError("version", f"expected one of {', '.join(RELEASES)}, found {version!r}")
    write_bundle(directory, version)
    echo(f"wrote {directory} (sign it with `sonic-registry sign {directory} --key ...`)")


@main.command()
@click.option(
    "--out",
    default="demo-output",
    show_default=True,
    type=click.Path(file_okay=False, path_type=Path),
)
@click.option("--seconds", default=8.0, show_default=True, help="Length of the speech.")
@click.option("--size", default=256, show_default=True, help="Frame size in pixels.")
@click.option(
    "--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])
)
@handle_errors
def demo(out: Path, seconds: float, size: int, device: str) -> None:
    """The end-to-end walkthrough: sign, register, generate, refuse, audit."""
    from .demo import DemoConfig, run_demo

    config = DemoConfig(out=out, seconds=seconds, size=size, device=device)
    ok = run_demo(config, echo=echo)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":  # pragma: no cover
    main()
