"""What every command shares: one-line errors, exit codes, ``--json`` output.

Exit codes (DESIGN.md): 0 ok, 1 a check failed, 2 usage or unreadable input.
No traceback ever reaches a user: library errors print as one line each,
anything unexpected prints one line naming its type and exits 2.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import stat
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

import click

from ..errors import SonicRegistryError

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "PROGRESS_MIN_BYTES",
    "emit_json",
    "fail",
    "handle_errors",
    "json_option",
    "leaf_errors",
    "progress_bar",
    "stdout_console",
    "tree_bytes",
]

F = TypeVar("F", bound=Callable[..., Any])

json_option = click.option(
    "--json", "json_output", is_flag=True, help="Print a machine-readable JSON object on stdout."
)


def echo(message: object = "", *, err: bool = False, nl: bool = True) -> None:
    """``click.echo`` for a human-readable line: control and bidi characters escaped."""
    from ..terminal import printable

    click.echo(printable(str(message)), err=err, nl=nl)


def cells(*values: object) -> list[Any]:
    """Table cells from untrusted values: escaped (terminal.printable) and never rich markup.

    A file named ``[red]official`` or holding ``ESC[2K`` shows as its literal name.
    """
    from rich.text import Text

    from ..terminal import printable

    return [Text(printable(str(v))) for v in values]


def emit_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True, default=str))


def leaf_errors(exc: BaseException) -> list[SonicRegistryError]:
    """Every problem a library error carries (:func:`sonic_registry.errors.raise_all`)."""
    if isinstance(exc, SonicRegistryError):
        return list(exc.problems)
    return []


def fail(errors: Iterable[SonicRegistryError], *, json_output: bool = False) -> NoReturn:
    """Print one line per problem (or one JSON verdict) and exit with the worst code.

    A usage problem (2) outranks a verdict (1): if we could not read the input,
    the verdict is not meaningful.
    """
    # The same problem found twice (two copies of one signature, one file seen
    # by two checks) is one line: a repeated line reads as two problems.
    errs = list({(type(e), str(e)): e for e in errors}.values())
    code = max((e.exit_code for e in errs), default=2)
    if json_output:
        emit_json({"ok": False, "exit_code": code, "errors": [e.to_dict() for e in errs]})
    else:
        for e in errs:
            echo(f"error: {e}", err=True)
    sys.exit(code)


def _unexpected(exc: BaseException) -> SonicRegistryError:
    """One line for an exception no library check anticipated.

    >>> str(_unexpected(TypeError("boom")))
    'internal error (TypeError: boom); rerun with SONIC_REGISTRY_DEBUG=1 for the traceback'
    """
    return SonicRegistryError(
        "",
        f"internal error ({type(exc).__name__}: {exc}); "
        "rerun with SONIC_REGISTRY_DEBUG=1 for the traceback",
    )


def handle_errors(fn: F) -> F:
    """Turn library exceptions raised by a command into one-line errors and exit codes."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        json_output = bool(kwargs.get("json_output", False))
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise  # click's own usage errors and exits already print one line
        except BrokenPipeError:
            raise  # the reader of stdout went away: the root group ends quietly
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except SonicRegistryError as exc:
            leaves = leaf_errors(exc)
            fail(leaves or [_unexpected(exc)], json_output=json_output)
        except OSError as exc:
            where = exc.filename or ""
            fail(
                [SonicRegistryError(str(where), exc.strerror or str(exc))], json_output=json_output
            )
        except Exception as exc:
            # A bug of ours rather than bad input: still one line and exit 2, so
            # scripts and hooks never parse a traceback; the traceback itself is
            # there on request.
            if os.environ.get("SONIC_REGISTRY_DEBUG"):
                raise
            fail([_unexpected(exc)], json_output=json_output)

    return wrapper  # type: ignore[return-value]


def stdout_console(width: int | None = None) -> Console:
    """A rich console on stdout whose closed pipe ends the command like any other write.

    rich's own reaction to a closed stdout is ``SystemExit(1)``; raising
    :class:`BrokenPipeError` instead lets the root command end every command alike.
    """
    from rich.console import Console

    class _StdoutConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError

    return _StdoutConsole(width=width)


#: Show a progress bar only for work this large (and only on a terminal).
PROGRESS_MIN_BYTES = 256 << 20


def tree_bytes(root: Path) -> int:
    """Bytes of the regular files under ``root`` (links not followed): a progress total."""
    if root.is_file():
        return root.stat().st_size  # a single-file model (verify --oms)
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                st = os.lstat(os.path.join(dirpath, name))
                if stat.S_ISREG(st.st_mode):
                    total += st.st_size
    return total


@contextlib.contextmanager
def progress_bar(
    total: int | Callable[[], int],
    label: str,
    *,
    min_bytes: int = PROGRESS_MIN_BYTES,
    terminal: TextIO | None = None,
) -> Iterator[Callable[[int], None] | None]:
    """A rich progress bar on stderr for big jobs, only when ``terminal`` is a TTY.

    ``terminal`` defaults to stderr; ``doctor`` passes stdout, so its table
    piped to a file gets no bar on the console either. A callable ``total``
    (e.g. walking the model folder) is only computed when a bar could be shown.
    """
    shown_on = terminal if terminal is not None else sys.stderr
    if not shown_on.isatty():
        yield None
        return
    if callable(total):
        total = total()
    if total < min_bytes:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
