"""The ``sonic-registry`` command: a thin click layer over the library.

Each command group lives in its own module (``keys``, ``release``, ...); this
module only assembles them. Command modules import the library lazily inside
their functions so that ``sonic-registry --help`` stays fast and torch-free.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from .. import __version__

#: command name -> (module, attribute) of the click command. A module is imported
#: only when its command runs (or for ``--help``): ``verify`` starts hashing
#: sooner for not loading the other commands' modules.
_COMMANDS: dict[str, tuple[str, str]] = {
    "keygen": ("keys", "keygen"),
    "init": ("release", "init"),
    "sign": ("release", "sign"),
    "verify": ("release", "verify"),
    "trust": ("trust", "trust"),
    "export-oms": ("oms", "export_oms"),
    "check-params": ("params", "check_params_command"),
    "audit": ("audit", "audit"),
    "registry": ("registry", "registry"),
    "identify": ("registry", "identify"),
    "resolve": ("registry", "resolve"),
    "doctor": ("registry", "doctor"),
    "convert": ("convert", "convert"),
    "comfyui": ("comfyui", "comfyui"),
}


#: Exit status after the reader of stdout went away (``sonic-registry ... | head``):
#: what a shell reports for a process ended by SIGPIPE (128 + 13), as ``cat`` or
#: ``git log`` would exit, without the "Broken pipe" message.
EXIT_BROKEN_PIPE = 141


def _end_quietly() -> NoReturn:
    """The reader of stdout went away: stop without a message.

    stdout now points at /dev/null, so the interpreter's final flush of what
    is still buffered cannot fail a second time ("Exception ignored ...").
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(EXIT_BROKEN_PIPE)


def _usage_error_json(exc: click.ClickException) -> dict[str, Any]:
    """A click usage error as the same object every ``--json`` failure prints."""
    ctx = getattr(exc, "ctx", None)
    where = ctx.command_path if ctx is not None else "sonic-registry"
    return {
        "ok": False,
        "exit_code": exc.exit_code,
        "errors": [{"error": "UsageError", "where": where, "detail": exc.format_message()}],
    }


def _report_usage_error(exc: click.ClickException, *, json_output: bool) -> None:
    if json_output:
        from ._common import emit_json

        emit_json(_usage_error_json(exc))
    else:
        exc.show()


class _Main(click.Group):
    """The root group: one policy for usage errors, ``--json`` and a closed stdout.

    click's standalone mode prints usage errors as text and reports a closed pipe
    as exit 1; here a usage error under ``--json`` is one JSON object like every
    other outcome, and a closed stdout ends the command quietly. click itself
    swallows a broken pipe (exit 1) even outside standalone mode, so it is
    caught here first, where parsing (``--help``) and commands write.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _COMMANDS and cmd_name not in self.commands:
            module, attr = _COMMANDS[cmd_name]
            command = getattr(importlib.import_module(f".{module}", __name__), attr)
            self.add_command(command, cmd_name)
        return self.commands.get(cmd_name)

    def make_context(self, *args: Any, **kwargs: Any) -> click.Context:
        try:
            return super().make_context(*args, **kwargs)
        except BrokenPipeError:
            _end_quietly()

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _end_quietly()

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        if not standalone_mode:
            return super().main(argv, prog_name, complete_var, False, **extra)
        try:
            try:
                rv = super().main(argv, prog_name, complete_var, False, **extra)
            except click.ClickException as exc:
                _report_usage_error(exc, json_output="--json" in argv)
                rv = exc.exit_code
            except click.Abort as exc:
                if isinstance(exc.__context__, KeyboardInterrupt):  # Ctrl-C while parsing
                    click.echo("interrupted", err=True)  # as inside a command (_common)
                    rv = 130
                else:  # a declined confirmation
                    click.echo("Aborted!", err=True)
                    rv = 1
            sys.stdout.flush()
        except BrokenPipeError:
            _end_quietly()
        # ``--help`` and ``--version`` end in click's Exit, returned here as its code
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


@click.group(
    cls=_Main,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="sonic-registry")
def main() -> None:
    """Sign, verify and resolve model releases so parts that do not belong together never run.

    Exit codes: 0 ok, 1 a check failed, 2 usage or unreadable input.
    """
