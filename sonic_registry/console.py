"""The ``sonic-registry`` console script: what happens before the CLI loads and after it ends.

The click application (:mod:`sonic_registry.cli`) is the whole command line;
this entry point only adds two things it cannot do for itself, each measured
with ``python -m bench`` on two cores (1 GiB verify, against two parallel
``openssl dgst -sha256``):

* **Hashing starts first.** ``sonic-registry verify DIR ...`` starts hashing
  ``DIR``'s files (:mod:`.prehash`) before click and the command modules are
  imported (about 25 ms of CPU), so those imports run beside the hashing on
  the second core instead of in front of it. Only this plain form is read
  here (the folder right after ``verify``), without ``--digest`` or ``--oms``
  that change what verify hashes; anything else simply starts nothing, and
  the verify command starts hashing itself as before. Nothing is trusted on
  the way: the command adopts the early hashing only for the same folder and
  digest choice, and uses a digest only for the same file and stat it
  checks itself.
* **No interpreter teardown.** Once the command returned and its output is
  flushed, atexit handlers run and the process ends with :func:`os._exit`:
  freeing every loaded module (click, cryptography, ...) takes 13-15 ms and
  changes nothing a user can see. When another non-daemon thread is still
  running, the interpreter's normal exit (which waits for it) is used.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from .prehash import Prehash

__all__ = ["early_verify_folder", "run", "run_hook"]

#: Options after ``verify DIR`` that change what verify hashes: with them, nothing starts early.
_NOT_EARLY = frozenset({"--digest", "--oms", "-h", "--help"})


def early_verify_folder(argv: Sequence[str]) -> str | None:
    """The model folder of ``verify DIR [OPTIONS]`` when it can be read without click, else None.

    >>> early_verify_folder(["verify", "models/sonic", "--trust", "t.json"])
    'models/sonic'
    >>> early_verify_folder(["verify", "--trust", "t.json", "models/sonic"]) is None
    True
    >>> early_verify_folder(["verify", "m", "--digest=sha256"]) is None
    True
    """
    if len(argv) < 2 or argv[0] != "verify" or argv[1].startswith("-"):
        return None
    if any(arg.partition("=")[0] in _NOT_EARLY for arg in argv[2:]):
        return None
    return argv[1]


def _start_early(argv: Sequence[str]) -> Prehash | None:
    folder = early_verify_folder(argv)
    if folder is None:
        return None
    from .prehash import start_prehash

    return start_prehash(folder)


def _exit_code(status: object) -> int:
    """The process status :func:`sys.exit` would give for ``status`` (printing a message one)."""
    if status is None:
        return 0
    if isinstance(status, int):
        return status
    print(status, file=sys.stderr)
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        # the reader went away, or the stream is closed: nothing left to tell anyone
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def _exit_now(code: int) -> NoReturn:
    """End the process without interpreter teardown, unless another thread still runs."""
    main = threading.main_thread()
    if any(t is not main and t.is_alive() and not t.daemon for t in threading.enumerate()):
        sys.exit(code)  # the interpreter waits for it
    _flush()
    atexit._run_exitfuncs()  # what the interpreter would run before tearing down
    _flush()
    os._exit(code)


def run() -> NoReturn:
    """``sonic-registry``: start hashing for ``verify DIR``, run the CLI, exit without teardown."""
    argv = sys.argv[1:]
    early = _start_early(argv)
    try:
        from .cli import main  # in the try: a Ctrl-C while it loads stops the early hashing too

        # standalone mode always ends in SystemExit; ``obj`` reaches every command's context
        main.main(argv, obj=early)
        status: object = 0
    except SystemExit as exc:
        status = exc.code
    except KeyboardInterrupt:  # while the CLI loads or parses (commands handle their own)
        print("interrupted", file=sys.stderr)
        status = 130
    finally:
        if early is not None:
            early.cancel()  # a no-op once verify took its digests; stops an unclaimed one
    _exit_now(_exit_code(status))


def run_hook() -> NoReturn:
    """``sonic-registry-hook``: the pre-commit hooks, ending without teardown like :func:`run`.

    The hook runs on every commit; its warm path (nothing changed) is ~70 ms, of
    which the teardown was 6-9 ms.
    """
    from .precommit import main

    _exit_now(main())
