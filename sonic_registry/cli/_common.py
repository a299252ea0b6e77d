"""What every command shares: one-line errors, exit codes, ``--json`` output.

Exit codes (DESIGN.md): 0 ok, 1 a check failed, 2 usage or unreadable input.
No traceback ever reaches a user: library errors print as one line each,
anything unexpected prints one line naming its type and exits 2.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, TypeVar

import click

from ..errors import SonicRegistryError

__all__ = ["emit_json", "fail", "handle_errors", "json_option", "leaf_errors"]

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option(
    "--json", "json_output", is_flag=True, help="Print a machine-readable JSON object on stdout."
)


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def leaf_errors(exc: BaseException) -> list[SonicRegistryError]:
    """Flatten an ExceptionGroup of library errors into its leaves."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[SonicRegistryError] = []
        for sub in exc.exceptions:
            out.extend(leaf_errors(sub))
        return out
    if isinstance(exc, SonicRegistryError):
        return list(exc.problems)
    return []


def fail(errors: Iterable[SonicRegistryError], *, json_output: bool = False) -> NoReturn:
    """Print one line per problem (or one JSON verdict) and exit with the worst code.

    A usage problem (2) outranks a verdict (1): if we could not read the input,
    the verdict is not meaningful.
    """
    errs = list(errors)
    code = max((e.exit_code for e in errs), default=2)
    if json_output:
        emit_json({"ok": False, "exit_code": code, "errors": [e.to_dict() for e in errs]})
    else:
        for e in errs:
            click.echo(f"error: {e}", err=True)
    sys.exit(code)


def handle_errors(fn: F) -> F:
    """Turn library exceptions raised by a command into one-line errors and exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        json_output = bool(kwargs.get("json_output", False))
        try:
            return fn(*args, **kwargs)
        except (SonicRegistryError, BaseExceptionGroup) as exc:
            leaves = leaf_errors(exc)
            if not leaves:
                raise
            fail(leaves, json_output=json_output)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except OSError as exc:
            where = exc.filename or ""
            fail(
                [SonicRegistryError(str(where), exc.strerror or str(exc))], json_output=json_output
            )

    return wrapper  # type: ignore[return-value]
