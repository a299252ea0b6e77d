"""The log file itself: record lines, the writers' lock, appending and recovery.

Each line is the RFC 8785 canonical JSON of a record plus two fields the log
owns: ``seq`` (1, 2, ...) and ``prev`` (the sha256 of the previous line's
bytes, 64 zeros for the first). Writers take the log's lock, then write each
line with one ``os.write`` on an ``O_APPEND`` descriptor and ``fsync``. A torn
last line (a crash mid-write) blocks appends until :func:`recover` moves it aside.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from filelock import Timeout

from ..canonical import canonical_bytes, loads_strict
from ..errors import InvalidManifest, UnreadableInputError, UsageError
from ..fileio import atomic_write_bytes, fsync_directory, reading
from ..hexdigest import is_sha256_hex
from ..locks import file_lock

if TYPE_CHECKING:
    from ..signing import PrivateKey

__all__ = [
    "DEFAULT_LOG",
    "GENESIS",
    "AuditLog",
    "BadLine",
    "Record",
    "Recovery",
    "head_path",
    "locked",
    "parse_line",
    "read_lines",
    "read_records",
    "recover",
]

DEFAULT_LOG = "generations.jsonl"
#: ``prev`` of the first record.
GENESIS = "0" * 64
_RESERVED = ("seq", "prev")
_TAIL_CHUNK = 64 * 1024


def head_path(log: str | Path) -> Path:
    """Where the signed head of ``log`` lives: ``<log>.head.json``."""
    return Path(f"{log}.head.json")


@contextlib.contextmanager
def locked(log: Path, timeout: float, *, optional: bool = False) -> Iterator[None]:
    """Hold the writers' lock (:func:`..locks.lock_path`); problems become one-line errors.

    ``optional``: for readers of a read-only copy (an auditor's), where no lock
    file can be created and no writer can be appending either.
    """
    lock = file_lock(log, timeout=timeout)
    try:
        lock.acquire()
    except Timeout as exc:  # before OSError: Timeout is a TimeoutError
        raise UnreadableInputError(
            lock.lock_file, f"could not lock the log within {timeout} s"
        ) from exc
    except OSError as exc:
        if not optional:
            raise UnreadableInputError(lock.lock_file, f"cannot lock: {exc.strerror}") from exc
        yield
        return
    try:
        yield
    finally:
        lock.release()


# -- records --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Record:
    """One log line, parsed: its position in the chain and its fields."""

    seq: int
    prev: str
    fields: Mapping[str, Any]
    line: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        """What the next record's ``prev`` must be."""
        return hashlib.sha256(self.line).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "prev": self.prev, **self.fields}


class BadLine(Exception):
    """Why one line is not a valid record: ``kind`` as in :class:`~.verify.LogProblem`."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def parse_line(line: bytes) -> Record:
    """Parse one line (without its newline); raise BadLine saying what is wrong."""
    if not line.strip():
        raise BadLine("inserted", "empty line")
    try:
        obj = loads_strict(line)
    except InvalidManifest as exc:
        raise BadLine("edited", f"not a JSON record ({exc.detail})") from None
    if not isinstance(obj, dict):
        raise BadLine("edited", "not a JSON object")
    seq, prev = obj.get("seq"), obj.get("prev")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise BadLine("edited", f"seq: expected an integer >= 1, found {seq!r}")
    if not is_sha256_hex(prev):
        raise BadLine("edited", f"prev: expected 64 hex digits, found {prev!r}")
    # A record is hashed as written; a hand edit that keeps the data but not the
    # canonical bytes (re-indenting, re-ordering keys) still changes the hash.
    try:
        canonical = canonical_bytes(obj)
    except InvalidManifest as exc:  # e.g. integers beyond 2**53, which RFC 8785 refuses
        raise BadLine("edited", exc.detail) from None
    if canonical != line:
        raise BadLine("edited", "not in canonical JSON form (edited by hand?)")
    fields = {k: v for k, v in obj.items() if k not in _RESERVED}
    return Record(seq, prev, MappingProxyType(fields), line)


def _line_start(fd: int, end: int) -> int:
    """Offset just after the last newline in the first ``end`` bytes (0 if none).

    The one backward scan: it finds the last record (``end`` = size - 1, before
    the final newline) and the end of the last complete line (``end`` = size).
    """
    pos = end
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        cut = os.pread(fd, step, pos - step).rfind(b"\n")
        if cut >= 0:
            return pos - step + cut + 1
        pos -= step
    return 0


def _last_line(fd: int, size: int) -> bytes:
    """The last complete line (without its newline) of a file ending in a newline."""
    start = _line_start(fd, size - 1)
    return os.pread(fd, size - 1 - start, start)


# -- writing ------------------------------------------------------------------------


class AuditLog:
    """Append-only writer for one log file; safe to use from several processes.

    With ``signing_key`` the head is re-signed after every append, so removing
    records from the end is detected too.
    """

    def __init__(
        self,
        path: str | Path = DEFAULT_LOG,
        *,
        signing_key: PrivateKey | None = None,
        lock_timeout: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.signing_key = signing_key
        self.lock_timeout = lock_timeout

    def append(self, fields: Mapping[str, Any]) -> Record:
        """Append one record (``fields`` plus ``seq``/``prev``) and return it."""
        clash = [k for k in _RESERVED if k in fields]
        if clash:
            raise UsageError(str(self.path), f"record fields {clash} are reserved for the chain")
        with locked(self.path, self.lock_timeout):
            record = self._appendlocked(fields)
            if self.signing_key is not None:
                from .head import write_head  # head builds on this module

                write_head(self.path, record, self.signing_key)
            return record

    def _appendlocked(self, fields: Mapping[str, Any]) -> Record:
        created = not self.path.exists()
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise UnreadableInputError(str(self.path), f"cannot open: {exc.strerror}") from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device would swallow records
            os.close(fd)
            raise UnreadableInputError(str(self.path), "expected a log file, found a special file")
        os.set_blocking(fd, True)
        try:
            size = os.fstat(fd).st_size
            seq, prev = 1, GENESIS
            if size:
                # Step 1: refuse to extend a torn line; the chain would hash garbage.
                if os.pread(fd, 1, size - 1) != b"\n":
                    raise UnreadableInputError(
                        str(self.path),
                        "last line is torn (no trailing newline, an interrupted write); "
                        "run `sonic-registry audit recover` first",
                    )
                # Step 2: chain to the last record as it is on disk now, under the lock.
                last_line = _last_line(fd, size)
                try:
                    last = parse_line(last_line)
                except BadLine as exc:
                    raise UnreadableInputError(
                        str(self.path),
                        f"last line is not a valid record ({exc.message}); "
                        "run `sonic-registry audit verify`",
                    ) from None
                seq, prev = last.seq + 1, last.sha256
            line = canonical_bytes({**fields, "seq": seq, "prev": prev})
            data = line + b"\n"
            # Step 3: one write on an O_APPEND descriptor, then fsync, so a record
            # is either wholly there or (after a crash) a torn tail recover() handles.
            written = os.write(fd, data)
            if written != len(data):
                raise UnreadableInputError(
                    str(self.path),
                    f"short write ({written} of {len(data)} bytes, disk full?); "
                    "run `sonic-registry audit recover`",
                )
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_directory(self.path.parent)
        return Record(seq, prev, MappingProxyType(dict(fields)), line)


# -- recovery -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Recovery:
    """What :func:`recover` did: how many torn bytes went where."""

    log: str
    torn_bytes: int
    moved_to: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"log": self.log, "torn_bytes": self.torn_bytes, "moved_to": self.moved_to}


def recover(path: str | Path, *, lock_timeout: float = 60.0) -> Recovery:
    """Move a torn last line (no trailing newline) to ``<log>.torn-<time>``.

    Only the bytes after the last newline are moved; complete records are never
    touched. Returns ``torn_bytes=0`` when the log was intact.
    """
    log = Path(path)
    if not log.is_file():
        raise UnreadableInputError(str(log), "no such log file")
    with locked(log, lock_timeout), open(log, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0 or os.pread(fh.fileno(), 1, size - 1) == b"\n":
            return Recovery(str(log), 0, None)
        keep = _line_start(fh.fileno(), size)
        torn = os.pread(fh.fileno(), size - keep, keep)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = Path(f"{log}.torn-{stamp}")
        # Save the torn bytes first: if we crash between the two steps the
        # bytes exist twice, never zero times.
        atomic_write_bytes(target, torn)
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
        return Recovery(str(log), len(torn), str(target))


# -- reading ----------------------------------------------------------------------------


def read_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without newline, had a newline) for every line."""
    with reading(path, kind="log file", missing="no such log file") as fh:
        for number, raw in enumerate(fh, 1):
            complete = raw.endswith(b"\n")
            yield number, raw[:-1] if complete else raw, complete


def read_records(path: str | Path) -> Iterator[tuple[int, Record]]:
    """Every readable record with its line number; unreadable lines are skipped.

    This does not check the chain: use :func:`verify_log` to trust the contents.
    """
    for number, line, complete in read_lines(Path(path)):
        if not complete:
            continue
        try:
            yield number, parse_line(line)
        except BadLine:
            continue
