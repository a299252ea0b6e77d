"""``registry add|list|show|rebuild-index``, ``identify``, ``resolve``, ``doctor``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError
from ._common import (
    cells,
    echo,
    emit_json,
    fail,
    handle_errors,
    json_option,
    progress_bar,
    stdout_console,
)
from .registry_publish import PUBLISH_COMMANDS, online_key_option, publish_after_add
from .release import load_trust, trust_options

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ..errors import SonicRegistryError
    from ..identify import Identification
    from ..known import KnownReleases
    from ..registry import Registry
    from ..registry.core import ReleaseSummary

__all__ = ["SourceOptions", "doctor", "identify", "open_known", "registry", "resolve"]

#: doctor shows a progress bar (stderr) when stdout is a terminal and it hashes this much.
DOCTOR_PROGRESS_BYTES = 1 << 30


def _remember_root(ctx: click.Context, _param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.meta["sonic_registry.registry_root"] = value


def registry_root_option(fn: Any) -> Any:
    """``--registry-root FILE`` (default: env SONIC_REGISTRY_ROOT), on every command that
    reads a registry, so any of them can bootstrap a TUF client; :func:`_open` uses it."""
    return click.option(
        "--registry-root",
        type=click.Path(dir_okay=False, path_type=Path),
        envvar="SONIC_REGISTRY_ROOT",
        expose_value=False,
        callback=_remember_root,
        help="The published registry's TUF root.json: read it through signed TUF metadata "
        "(needed once; then cached). Without it an http(s) registry is read unsigned, "
        "with a warning (env SONIC_REGISTRY_ROOT).",
    )(fn)


def registry_option(fn: Any) -> Any:
    fn = registry_root_option(fn)
    return click.option(
        "--registry",
        "registry_location",
        required=True,
        envvar="SONIC_REGISTRY",
        help="Registry directory, or file:// / http(s):// URL of a published one "
        "(env SONIC_REGISTRY).",
    )(fn)


def _open(location: str, trust_path: Path | None, public_keys: tuple[Path, ...]) -> Registry:
    """The registry at ``location``, through TUF when the command's ``--registry-root``
    (or its env default) pinned a root."""
    from ..registry import open_registry, start_refresh

    ctx = click.get_current_context(silent=True)
    root = ctx.meta.get("sonic_registry.registry_root") if ctx is not None else None
    early = start_refresh(location, tuf_root=root)  # its round trip overlaps load_trust
    try:
        trust = load_trust(trust_path, public_keys)
    except BaseException:
        if early is not None:
            early.close()  # bad trust input: stop the downloads started for nothing
        raise
    return open_registry(location, trust, tuf_root=root, fetcher=early)


def known_options(fn: Any) -> Any:
    """``--registry`` (optional here), ``--registry-root``, the trust options and
    ``--no-builtin-catalog``."""
    fn = click.option(
        "--no-builtin-catalog",
        is_flag=True,
        help="Do not use the built-in catalog of the files Sonic's authors published "
        "(label 'published'); only signed releases from --registry count.",
    )(fn)
    fn = trust_options(fn)
    fn = registry_root_option(fn)
    return click.option(
        "--registry",
        "registry_location",
        envvar="SONIC_REGISTRY",
        help="Registry of signed releases: directory, or file:// / http(s):// URL "
        "(env SONIC_REGISTRY). Optional: the built-in catalog needs none.",
    )(fn)


def require_signed_option(fn: Any) -> Any:
    """``--require-signed``, the one policy flag every command using the catalog shares."""
    return click.option(
        "--require-signed",
        is_flag=True,
        help="Policy: only a release signed by a trusted key counts (the built-in "
        "catalog's 'published' release does not).",
    )(fn)


@dataclass(frozen=True)
class SourceOptions:
    """Where a command's releases come from, as its options gave it (named, not a tuple
    whose order every caller must remember): ``--registry``, ``--trust``,
    ``--public-key`` and ``--no-builtin-catalog``."""

    location: str | None
    trust_path: Path | None
    public_keys: tuple[Path, ...]
    no_builtin_catalog: bool = False


def open_known(source: SourceOptions) -> KnownReleases:
    """The registry (when given) plus the built-in catalog (unless turned off)."""
    from ..catalog import load_catalog
    from ..known import KnownReleases

    reg = _open(source.location, source.trust_path, source.public_keys) if source.location else None
    if reg is None and source.no_builtin_catalog:
        raise UsageError("--no-builtin-catalog", "give --registry: no other source of releases")
    return KnownReleases(reg, None if source.no_builtin_catalog else load_catalog())


def _warn_problems(reg: Registry | KnownReleases, json_output: bool) -> None:
    if not json_output:
        for line in reg.problems:
            echo(f"warning: {line}", err=True)


@click.group()
def registry() -> None:
    """A registry of signed releases (files + a rebuildable SQLite index)."""


for _command in PUBLISH_COMMANDS:
    registry.add_command(_command)


@registry.command("add")
@click.argument("envelopes", nargs=-1, required=True, type=click.Path(path_type=Path))
@registry_option
@trust_options
@click.option(
    "--no-record-serial", is_flag=True, help="Do not record the serial in the trust store."
)
@online_key_option
@json_option
@handle_errors
def registry_add(
    envelopes: tuple[Path, ...],
    registry_location: str,
    trust_path: Path | None,
    public_keys: tuple[Path, ...],
    no_record_serial: bool,
    online_key: Path | None,
    json_output: bool,
) -> None:
    """Verify signed releases and store them; refuses serial rollback.

    Each ENVELOPE is a release.dsse.json, or a signed bundle directory holding one.
    """
    with _open(registry_location, trust_path, public_keys) as reg:
        results = [reg.add(e, record_serial=not no_record_serial) for e in envelopes]
    publish_after_add(registry_location, online_key, json_output)
    if json_output:
        emit_json(
            {
                "ok": True,
                "added": [
                    {**r.statement.to_dict(), "path": str(r.path), "added": r.added}
                    for r in results
                ],
            }
        )
        return
    for r in results:
        verb = "added" if r.added else "already stored"
        echo(f"{verb}: {r.statement.release.release_id} ({r.statement.channel}) -> {r.path}")


@registry.command("list")
@registry_option
@trust_options
@json_option
@handle_errors
def registry_list(
    registry_location: str,
    trust_path: Path | None,
    public_keys: tuple[Path, ...],
    json_output: bool,
) -> None:
    """List every release that verifies with your trust store."""
    with _open(registry_location, trust_path, public_keys) as reg:
        releases = reg.summaries()  # refreshes now; rows stream while printing
        _warn_problems(reg, json_output)
        if json_output:
            _emit_listing_json(releases, reg.problems)
            return
        batch: list[str] = []
        for r in releases:
            batch.append(
                f"{r.model} {r.version} serial {r.serial} {r.channel} "
                f"expires {r.expires} roles {', '.join(r.roles)}"
            )
            if len(batch) == _LIST_BATCH:
                echo("\n".join(batch))
                batch.clear()
        if batch:
            echo("\n".join(batch))


#: Lines written at a time by ``registry list`` (bounded memory, few writes).
_LIST_BATCH = 512


def _emit_listing_json(releases: Iterator[ReleaseSummary], problems: list[str]) -> None:
    """``{"ok", "releases", "skipped"}`` exactly as :func:`emit_json` prints it, one release
    at a time (a listing of 10,000 releases is never one object in memory)."""
    import json
    import textwrap

    click.echo('{\n  "ok": true,\n  "releases": [', nl=False)
    sep = "\n"
    for r in releases:
        item = json.dumps(r.to_dict(), indent=2, sort_keys=True, default=str)
        click.echo(sep + textwrap.indent(item, "    "), nl=False)
        sep = ",\n"
    click.echo("\n  ]," if sep == ",\n" else "],", nl=False)
    skipped = json.dumps(list(problems), indent=2)
    click.echo('\n  "skipped": ' + textwrap.indent(skipped, "  ")[2:] + "\n}")


@registry.command("show")
@click.argument("model")
@click.argument("version")
@registry_option
@trust_options
@json_option
@handle_errors
def registry_show(
    model: str,
    version: str,
    registry_location: str,
    trust_path: Path | None,
    public_keys: tuple[Path, ...],
    json_output: bool,
) -> None:
    """Show one release: components, training steps, digests, runtime needs."""
    with _open(registry_location, trust_path, public_keys) as reg:
        s = reg.get(model, version)
    r = s.release
    if json_output:
        emit_json(
            {
                "ok": True,
                **s.to_dict(),
                "predicate": r.to_predicate(),
                "subjects": {
                    n: {"sha256": d.sha256, "size": d.size} for n, d in s.subjects.items()
                },
            }
        )
        return
    echo(f"{r.release_id} ({s.channel}) signed by {', '.join(s.signers) or '-'}")
    echo(f"manifest sha256 {s.manifest_digest}; expires {r.expires}")
    for role, c in r.components.items():
        step = f" step {c.training_step}" if c.training_step is not None else ""
        for name in c.paths:
            echo(
                f"  {role}: {name} {c.format} {c.interface}{step} sha256 {s.subjects[name].sha256}"
            )
    for dist, spec in r.runtime.items():
        echo(f"  runtime {dist} {spec}")
    for compat in r.compatible_with:
        roles = f" roles {', '.join(compat.roles)}" if compat.roles else ""
        echo(f"  compatible with {compat.model} {compat.versions}{roles}")


@registry.command("rebuild-index")
@registry_option
@trust_options
@json_option
@handle_errors
def registry_rebuild_index(
    registry_location: str,
    trust_path: Path | None,
    public_keys: tuple[Path, ...],
    json_output: bool,
) -> None:
    """Recreate index.sqlite and releases.json from the signed envelopes alone."""
    with _open(registry_location, trust_path, public_keys) as reg:
        count = reg.rebuild_index()
        _warn_problems(reg, json_output)
        problems = list(reg.problems)
    if json_output:
        emit_json({"ok": True, "releases": count, "skipped": problems})
    else:
        echo(f"indexed {count} release(s)")


def _stat_cache(path: Path | None) -> Any:
    if path is None:
        return None
    from ..digest import StatCache

    return StatCache(path)


def _signed_policy(idents: list[Identification], require_signed: bool) -> list[SonicRegistryError]:
    """``--require-signed`` on identified files (:func:`~sonic_registry.identify.unsigned_files`,
    the rule resolve applies too); each refusal is one ``error:`` line on stderr, as
    :func:`fail` prints them, in text and JSON mode alike."""
    if not require_signed:
        return []
    from ..identify import unsigned_files

    refused: list[SonicRegistryError] = list(unsigned_files(idents))
    for e in refused:
        echo(f"error: {e}", err=True)
    return refused


stat_cache_option = click.option(
    "--stat-cache",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Reuse digests of unchanged files (size, mtime, ctime, inode) from this cache file.",
)


@click.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@known_options
@require_signed_option
@stat_cache_option
@json_option
@handle_errors
def identify(
    files: tuple[Path, ...],
    registry_location: str | None,
    trust_path: Path | None,
    public_keys: tuple[Path, ...],
    no_builtin_catalog: bool,
    require_signed: bool,
    stat_cache: Path | None,
    json_output: bool,
) -> None:
    """Which checkpoint is this? Hash each FILE and answer from the registry.

    Exit 0 when every file is known, 1 when any is unknown to the registry (with
    --require-signed: known to no signed release; published files do not count).
    """
    from ..identify import identify_files

    with open_known(
        SourceOptions(registry_location, trust_path, public_keys, no_builtin_catalog)
    ) as reg:
        found = identify_files(files, reg, stat_cache=_stat_cache(stat_cache))
        _warn_problems(reg, json_output)
    refused = _signed_policy(found, require_signed)
    ok = all(i.known for i in found) and not refused
    if json_output:
        emit_json(
            {
                "ok": ok,
                "files": [i.to_dict() for i in found],
                "errors": [e.to_dict() for e in refused],
            }
        )
    else:
        for i in found:
            echo(i.describe())
    sys.exit(0 if ok else 1)


@click.command()
@click.argument("graph", type=click.Path(path_type=Path))
@known_options
@click.option(
    "--models-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Models folder the graph's file names are relative to (ComfyUI: the models/ folder).",
)
@click.option(
    "--runtime-version",
    help="Version of the runtime that will run the graph; "
    "checked against the release's reference_runtime specifier.",
)
@click.option(
    "--allow-unsigned",
    is_flag=True,
    help="Accept files no trusted release lists; they are labelled 'unverified'.",
)
@require_signed_option
@stat_cache_option
@json_option
@handle_errors
def resolve(
    graph: Path,
    registry_location: str | None,
    trust_path: Path | None,
    public_keys: tuple[Path, ...],
    no_builtin_catalog: bool,
    models_dir: Path | None,
    runtime_version: str | None,
    allow_unsigned: bool,
    require_signed: bool,
    stat_cache: Path | None,
    json_output: bool,
) -> None:
    """Resolve a pipeline.toml or ComfyUI workflow (UI or API) to exactly one release.

    Refuses graphs that mix releases, old node interfaces, wrong model families,
    unknown files and runtimes the release does not support.
    """
    from ..catalog import label_text
    from ..resolver import analyze_graph, load_graph

    g = load_graph(graph)
    cache = _stat_cache(stat_cache)
    with open_known(
        SourceOptions(registry_location, trust_path, public_keys, no_builtin_catalog)
    ) as reg:
        res = analyze_graph(
            g,
            reg,
            models_dir,
            runtime_version=runtime_version,
            allow_unsigned=allow_unsigned,
            stat_cache=cache,
            require_signed=require_signed,
        )
        _warn_problems(reg, json_output)
    if cache is not None:
        cache.save()
    if json_output:
        emit_json(res.to_dict())
        sys.exit(res.to_dict()["exit_code"])
    for line in res.warnings:
        echo(f"warning: {line}", err=True)
    for node in res.unknown_nodes:
        echo(f"warning: unknown node type, not checked: {node}", err=True)
    if res.problems:
        fail(res.problems)
    rel = res.release
    if rel is None:
        head = "no known release: UNVERIFIED (accepted with --allow-unsigned)"
    elif rel.channel == "published":
        head = f"{rel.release.model}@{rel.release.version} ({res.label}: {label_text()})"
    else:
        head = f"{rel.release.release_id} ({res.label})"
    echo(f"ok: {graph} resolves to {head}")
    for c in res.components:
        echo(f"  {c.describe()}")
    if res.params:
        echo("  params: " + ", ".join(f"{k}={v}" for k, v in sorted(res.params.items())))


@click.command()
@click.argument("models_dir", type=click.Path(file_okay=False, path_type=Path))
@known_options
@require_signed_option
@stat_cache_option
@json_option
@handle_errors
def doctor(
    models_dir: Path,
    registry_location: str | None,
    trust_path: Path | None,
    public_keys: tuple[Path, ...],
    no_builtin_catalog: bool,
    require_signed: bool,
    stat_cache: Path | None,
    json_output: bool,
) -> None:
    """Walk a ComfyUI or Sonic models folder: one row per weight file, and what to do.

    Exit 0 when every file belongs to a trusted release without mixing, else 1.
    """
    from ..doctor import diagnose, find_weight_files, total_bytes

    files = find_weight_files(models_dir)
    total = total_bytes(files)
    with (
        open_known(
            SourceOptions(registry_location, trust_path, public_keys, no_builtin_catalog)
        ) as reg,
        progress_bar(
            total, "hashing", min_bytes=DOCTOR_PROGRESS_BYTES, terminal=sys.stdout
        ) as progress,
    ):
        report = diagnose(
            models_dir, reg, stat_cache=_stat_cache(stat_cache), progress=progress, files=files
        )
        _warn_problems(reg, json_output)
    refused = _signed_policy([r.ident for r in report.rows], require_signed)
    ok = report.ok and not refused
    if json_output:
        emit_json({**report.to_dict(), "ok": ok, "errors": [e.to_dict() for e in refused]})
        sys.exit(0 if ok else 1)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{models_dir}", title_justify="left")
    table.add_column("file", no_wrap=True)
    for col in ("release", "role", "channel", "format"):
        table.add_column(col, no_wrap=True)
    table.add_column("action", overflow="fold", min_width=20)
    for row in report.rows:
        d = row.to_dict()
        table.add_row(
            *cells(
                d["path"],
                d["release_id"] or d["release"] or "-",
                d["role"] or "-",
                d["status"],
                d["format"],
                d["action"],
            )
        )
    stdout_console(width=max(160, Console().width)).print(table)
    if not report.rows:
        echo("no weight files found")
    sys.exit(0 if ok else 1)
