"""``sonic-registry audit``: verify, show and search the generation log."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ._common import cells, echo, emit_json, handle_errors, json_option, stdout_console
from .keys import passphrase_options, read_passphrase, signing_key_option

__all__ = ["audit"]

_DEFAULT_LOG = "generations.jsonl"  # == audit.DEFAULT_LOG; kept here so --help stays light

_log_argument = click.argument(
    "log", default=_DEFAULT_LOG, type=click.Path(dir_okay=False, path_type=Path)
)


@click.group()
def audit() -> None:
    """The tamper-evident generation log (default generations.jsonl)."""


@audit.command("verify")
@_log_argument
@click.option(
    "--public-key",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Require <LOG>.head.json to be signed by this key (catches truncation).",
)
@json_option
@handle_errors
def verify_command(log: Path, public_key: Path | None, json_output: bool) -> None:
    """Check the hash chain; name the line of every edited, deleted, inserted,
    reordered or truncated record. Exit 1 when the log was tampered with."""
    from ..audit import verify_log

    report = verify_log(log, public_key)
    if json_output:
        emit_json({**report.to_dict(), "exit_code": 0 if report.ok else 1})
    else:
        for problem in report.problems:
            echo(f"{log}: {problem}")
        for note in report.notes:
            echo(f"note: {note}", err=True)
        if report.ok:
            head = ""
            if report.head_seq is not None:
                signer = report.head_signed_by
                head = f", head seq {report.head_seq}" + (
                    f" signed by {signer[:16]}" if signer else " (signature not checked)"
                )
            echo(f"{log}: ok, {report.records} record(s) chained{head}")
    sys.exit(0 if report.ok else 1)


@audit.command("recover")
@_log_argument
@json_option
@handle_errors
def recover_command(log: Path, json_output: bool) -> None:
    """Move a torn last line (an interrupted write) aside so writers can append again."""
    from ..audit import recover

    result = recover(log)
    if json_output:
        emit_json({"ok": True, **result.to_dict()})
    elif result.torn_bytes:
        echo(f"{log}: moved {result.torn_bytes} torn byte(s) to {result.moved_to}")
    else:
        echo(f"{log}: no torn line, nothing to recover")


@audit.command("sign")
@_log_argument
@signing_key_option
@passphrase_options
@json_option
@handle_errors
def sign_command(log: Path, key_path: Path, passphrase_env: str | None, json_output: bool) -> None:
    """Sign the log's current last record into <LOG>.head.json."""
    from ..audit import sign_head
    from ..signing import load_private_key

    key = load_private_key(key_path, read_passphrase(passphrase_env, purpose=str(key_path)))
    out = sign_head(log, key)
    if json_output:
        emit_json({"ok": True, "head": str(out), "keyid": key.keyid})
    else:
        echo(f"wrote {out} (key {key.keyid[:16]})")


def _mapping(value: Any) -> Mapping[str, Any]:
    """A record field as a mapping; logs are read back, so never trust their shape."""
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    """A record field as a list (``warnings``); anything else reads as empty."""
    return value if isinstance(value, list) else []


def _params_text(params: Any) -> str:
    if not isinstance(params, Mapping):
        return ""
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))


@audit.command("show")
@_log_argument
@click.option("--last", type=click.IntRange(min=1), help="Only the last N records.")
@json_option
@handle_errors
def show_command(log: Path, last: int | None, json_output: bool) -> None:
    """Print the log as a table (the chain is not checked: use `audit verify`)."""
    from ..audit import read_records

    rows = list(read_records(log))
    if last is not None:
        rows = rows[-last:]
    if json_output:
        emit_json({"ok": True, "records": [{"line": n, **r.to_dict()} for n, r in rows]})
        return
    from rich.table import Table

    table = Table(title=str(log))
    for column in ("seq", "time", "release", "device", "params", "output", "warn"):
        table.add_column(column, overflow="fold")
    for _line, record in rows:
        f = record.fields
        release = _mapping(f.get("release"))
        output = _mapping(f.get("output"))
        out_text = (
            f"{Path(str(output.get('path', ''))).name} {str(output.get('sha256', ''))[:12]}"
            if output
            else ""
        )
        table.add_row(
            *cells(
                record.seq,
                f.get("time", ""),
                release.get("id", ""),
                f.get("device", ""),
                _params_text(f.get("params")),
                out_text,
                len(_list(f.get("warnings"))),
            )
        )
    stdout_console(width=None if sys.stdout.isatty() else 160).print(table)


@audit.command("find")
@click.argument("output", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--log",
    default=_DEFAULT_LOG,
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The generation log to search.",
)
@json_option
@handle_errors
def find_command(output: Path, log: Path, json_output: bool) -> None:
    """Which release, components and parameters made OUTPUT? (matched by sha256)"""
    from ..audit import find_output_verified

    found, chain = find_output_verified(log, output)
    if json_output:
        emit_json(
            {
                "ok": bool(found),
                "chain_ok": chain.ok,
                "records": [{"line": n, **r.to_dict()} for n, r in found],
            }
        )
        sys.exit(0 if found else 1)
    if not chain.ok:
        echo(f"warning: {log} fails `audit verify`; these records may be forged", err=True)
    if not found:
        echo(f"{output}: no record in {log} has this file's sha256")
        sys.exit(1)
    for number, record in found:
        f = record.fields
        rel = _mapping(f.get("release"))
        echo(
            f"{output}: line {number} (seq {record.seq}), made {f.get('time')} on {f.get('device')}"
        )
        echo(
            f"  release: {rel.get('id')} ({rel.get('channel')}), "
            f"manifest sha256 {rel.get('manifest_sha256')}"
        )
        for role, comp in sorted(_mapping(f.get("components")).items()):
            for name, sha in sorted(_mapping(_mapping(comp).get("paths")).items()):
                echo(f"  {role}: {name} sha256 {sha}")
        echo(f"  params: {_params_text(f.get('params'))}")
        audio = f.get("audio")
        if isinstance(audio, Mapping):
            echo(
                f"  audio: {audio.get('path')} sha256 {audio.get('sha256')} "
                f"({audio.get('duration')} s); requested duration {f.get('duration')}"
            )
        for w in _list(f.get("warnings")):
            echo(f"  warning: {w}")
