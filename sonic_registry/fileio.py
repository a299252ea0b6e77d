"""Atomic writes: a crash leaves either the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from .errors import InvalidManifest, UnreadableInputError, UsageError

__all__ = [
    "NotRegularFileError",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_writer",
    "fsync_directory",
    "open_regular",
    "read_bounded",
    "read_regular",
    "reading",
    "refuse_to_overwrite",
]


class NotRegularFileError(OSError):
    """The path names a FIFO, device, socket or directory, not a file's bytes."""


@contextmanager
def atomic_writer(path: str | Path, *, mode: int = 0o644) -> Iterator[BinaryIO]:
    """Stream into a temp file beside ``path``; on success fsync it and rename it over ``path``.

    The one way this package replaces a file: the rename is atomic on POSIX and
    the directory is fsynced afterwards, so a crash leaves the old file or the
    new one, and the new name survives a power cut. If the ``with`` body raises,
    the temp file is removed and ``path`` is untouched. ``fh.name`` is the temp
    file's path, for writers that open it themselves (SQLite).
    """
    import tempfile  # writers only: readers (verify) do not pay for its imports

    target = Path(path)
    directory = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except FileNotFoundError as exc:
        raise UnreadableInputError(str(target), f"cannot write: no directory {directory}") from exc
    except OSError as exc:
        raise UnreadableInputError(str(target), f"cannot write: {exc.strerror}") from exc
    os.close(fd)  # reopened by name, so ``fh.name`` is the temp file's path
    try:
        os.chmod(tmp, mode)
        with open(tmp, "r+b") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_directory(directory)


def atomic_write_bytes(path: str | Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` atomically (:func:`atomic_writer`)."""
    with atomic_writer(path, mode=mode) as fh:
        fh.write(data)


def fsync_directory(directory: str | Path) -> None:
    """Make a new or renamed entry of ``directory`` survive a power cut.

    A file's own fsync does not persist its name; the directory must be synced
    too. Best effort: platforms without directory descriptors skip it.
    """
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_text(path: str | Path, text: str, *, mode: int = 0o644) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def open_regular(path: str | Path, *, follow_symlinks: bool = True) -> tuple[int, os.stat_result]:
    """Open ``path`` read-only without ever blocking, and only if it is a regular file.

    ``open()`` on a FIFO with no writer waits forever; with ``O_NONBLOCK`` it
    returns at once and ``fstat`` of the open descriptor (not of the name, which
    could be swapped in between) says what it really is. The descriptor is put
    back into blocking mode for the reads. Raises plain :class:`OSError`
    (``ELOOP`` for a final symlink when not ``follow_symlinks``) and
    :class:`NotRegularFileError`; callers turn those into their own one-line
    errors.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if not follow_symlinks:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(errno.EINVAL, f"is {_kind(st.st_mode)}")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def read_regular(path: str | Path, limit: int = -1) -> bytes:
    """At most ``limit`` bytes (all when -1) of a regular file; FIFOs and devices raise OSError.

    For callers that report ``OSError`` in their own words (the hooks).
    """
    fd, _ = open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        return fh.read(limit)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a special file"


@contextmanager
def reading(path: str | Path, *, kind: str = "file", missing: str = "") -> Iterator[BinaryIO]:
    """Open ``path`` for reading; every way that fails becomes one UsageError line.

    ``kind`` names what was expected ("log file", "signature file") and
    ``missing`` replaces the default "no such file" message with a hint. A
    FIFO, device or directory is refused at once (never a hang).
    """
    p = Path(path)
    try:
        fd, _ = open_regular(p)
    except FileNotFoundError as exc:
        raise UnreadableInputError(str(p), missing or "no such file") from exc
    except NotRegularFileError as exc:
        raise UnreadableInputError(str(p), f"{exc.strerror}, expected a {kind}") from exc
    except IsADirectoryError as exc:
        raise UnreadableInputError(str(p), f"is a directory, expected a {kind}") from exc
    except OSError as exc:
        raise UnreadableInputError(str(p), f"cannot read: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as fh:
        yield fh


def read_bounded(path: str | Path, limit: int, *, kind: str = "file", missing: str = "") -> bytes:
    """The whole of a small file, refusing one over ``limit`` bytes before reading it all.

    Every manifest, key, trust store and workflow is untrusted input: a 10 GB
    "release.toml" must cost one read of ``limit + 1`` bytes, not 10 GB of RAM.
    """
    with reading(path, kind=kind, missing=missing) as fh:
        try:
            data = fh.read(limit + 1)
        except OSError as exc:
            raise UnreadableInputError(str(path), f"cannot read: {exc.strerror}") from exc
    if len(data) > limit:
        raise InvalidManifest("", f"larger than {limit} bytes, expected a {kind}", path=str(path))
    return data


def refuse_to_overwrite(path: str | Path, *, force: bool) -> None:
    """The one overwrite policy of every command that writes an output file.

    An existing output (keys, a converted checkpoint, an OMS signature) is
    replaced only when the caller passed ``--force``.
    """
    if not force and os.path.lexists(path):
        raise UsageError(str(path), "already exists; refusing to overwrite it (use --force)")
