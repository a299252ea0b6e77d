"""A tamper-evident generation log: one canonical-JSON line per generated video.

Each line is the RFC 8785 canonical JSON of a record (:func:`generation_record`
builds one) plus two fields the log owns:

* ``seq``: 1 for the first record, then +1 per line;
* ``prev``: the sha256 of the previous line's bytes (without its newline),
  64 zeros for the first record.

So editing, deleting, inserting or reordering any record breaks the chain at a
line :func:`verify_log` can name. Removing whole records from the *end* leaves
a valid shorter chain; that is caught only by a signed head
(``<log>.head.json``, a DSSE envelope over ``{seq, sha256}`` of the last line),
written on every append when :class:`AuditLog` holds a key, or by
:func:`sign_head`.

Writers take the log's lock (:mod:`.locks`: under ``.git/`` in a work tree, else
``<log>.lock``), then write each line with one
``os.write`` on an ``O_APPEND`` descriptor and ``fsync``: several processes can
append safely. A crash mid-write can still leave a torn last line (no trailing
newline); writers then refuse to append until :func:`recover` moves the torn
bytes aside to ``<log>.torn-<time>`` and says so. Recovery is never implicit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

from filelock import Timeout

from . import __version__
from .canonical import canonical_bytes, loads_strict
from .errors import InvalidManifest, UnreadableInputError, UsageError
from .fileio import atomic_write_bytes, read_bounded, reading
from .locks import file_lock
from .manifest import Release, format_time

if TYPE_CHECKING:
    from .audio import AudioInfo
    from .digest import FileDigest
    from .signing import PrivateKey, PublicKey

__all__ = [
    "DEFAULT_LOG",
    "GENESIS",
    "HEAD_PREDICATE_TYPE",
    "AuditLog",
    "LogProblem",
    "LogReport",
    "Record",
    "Recovery",
    "find_output",
    "find_output_verified",
    "generation_record",
    "head_path",
    "output_digest",
    "read_records",
    "recover",
    "runtime_versions",
    "sign_head",
    "verify_log",
]

DEFAULT_LOG = "generations.jsonl"
#: ``prev`` of the first record.
GENESIS = "0" * 64
#: The head is an in-toto Statement (the same envelope type as releases); this
#: predicate type keeps a release envelope from ever passing for a log head.
HEAD_PREDICATE_TYPE = "https://sonic_registry/audit-head/v1"
_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_RESERVED = ("seq", "prev")
_TAIL_CHUNK = 64 * 1024
#: Largest signed head read: a one-statement DSSE envelope is well under a kilobyte.
MAX_HEAD_BYTES = 1024 * 1024


def head_path(log: str | Path) -> Path:
    """Where the signed head of ``log`` lives: ``<log>.head.json``."""
    return Path(f"{log}.head.json")


@contextlib.contextmanager
def _locked(log: Path, timeout: float, *, optional: bool = False) -> Iterator[None]:
    """Hold the writers' lock (:func:`.locks.lock_path`); problems become one-line errors.

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


class _BadLine(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def _parse_line(line: bytes) -> Record:
    """Parse one line (without its newline); raise _BadLine saying what is wrong."""
    if not line.strip():
        raise _BadLine("inserted", "empty line")
    try:
        obj = loads_strict(line)
    except InvalidManifest as exc:
        raise _BadLine("edited", f"not a JSON record ({exc.detail})") from None
    if not isinstance(obj, dict):
        raise _BadLine("edited", "not a JSON object")
    seq, prev = obj.get("seq"), obj.get("prev")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise _BadLine("edited", f"seq: expected an integer >= 1, found {seq!r}")
    if not isinstance(prev, str) or not _HEX64.fullmatch(prev):
        raise _BadLine("edited", f"prev: expected 64 hex digits, found {prev!r}")
    # A record is hashed as written; a hand edit that keeps the data but not the
    # canonical bytes (re-indenting, re-ordering keys) still changes the hash.
    try:
        canonical = canonical_bytes(obj)
    except InvalidManifest as exc:  # e.g. integers beyond 2**53, which RFC 8785 refuses
        raise _BadLine("edited", exc.detail) from None
    if canonical != line:
        raise _BadLine("edited", "not in canonical JSON form (edited by hand?)")
    fields = {k: v for k, v in obj.items() if k not in _RESERVED}
    return Record(seq, prev, MappingProxyType(fields), line)


def _last_line(fd: int, size: int) -> bytes:
    """The last complete line (without its newline) of a file ending in a newline."""
    pos = size - 1  # the final newline is excluded
    parts: list[bytes] = []
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        chunk = os.pread(fd, step, pos - step)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            parts.append(chunk[cut + 1 :])
            break
        parts.append(chunk)
        pos -= step
    return b"".join(reversed(parts))


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
        with _locked(self.path, self.lock_timeout):
            record = self._append_locked(fields)
            if self.signing_key is not None:
                _write_head(self.path, record, self.signing_key)
            return record

    def _append_locked(self, fields: Mapping[str, Any]) -> Record:
        created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UnreadableInputError(str(self.path), f"cannot open: {exc.strerror}") from exc
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
                    last = _parse_line(last_line)
                except _BadLine as exc:
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
            _fsync_dir(self.path.parent)
        return Record(seq, prev, MappingProxyType(dict(fields)), line)


def _fsync_dir(directory: Path) -> None:
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


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
    with _locked(log, lock_timeout), open(log, "r+b") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0 or os.pread(fh.fileno(), 1, size - 1) == b"\n":
            return Recovery(str(log), 0, None)
        keep = _end_of_last_complete_line(fh.fileno(), size)
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


def _end_of_last_complete_line(fd: int, size: int) -> int:
    pos = size
    while pos > 0:
        step = min(_TAIL_CHUNK, pos)
        chunk = os.pread(fd, step, pos - step)
        cut = chunk.rfind(b"\n")
        if cut >= 0:
            return pos - step + cut + 1
        pos -= step
    return 0


# -- reading ----------------------------------------------------------------------------


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, bytes without newline, had a newline) for every line."""
    with reading(path, kind="log file", missing="no such log file") as fh:
        for number, raw in enumerate(fh, 1):
            complete = raw.endswith(b"\n")
            yield number, raw[:-1] if complete else raw, complete


def read_records(path: str | Path) -> Iterator[tuple[int, Record]]:
    """Every readable record with its line number; unreadable lines are skipped.

    This does not check the chain: use :func:`verify_log` to trust the contents.
    """
    for number, line, complete in _lines(Path(path)):
        if not complete:
            continue
        try:
            yield number, _parse_line(line)
        except _BadLine:
            continue


def find_output(path: str | Path, output: str | Path) -> list[tuple[int, Record]]:
    """Records whose ``output.sha256`` is the digest of the file ``output``."""
    digest = _file_digests(Path(output))[0]
    return _made(read_records(path), digest)


def find_output_verified(
    path: str | Path, output: str | Path, public_key: PublicKey | str | Path | None = None
) -> tuple[list[tuple[int, Record]], LogReport]:
    """:func:`find_output` and :func:`verify_log` together, reading the log once."""
    digest = _file_digests(Path(output))[0]
    report = verify_log(path, public_key)
    return _made(report.parsed, digest), report


def _made(records: Iterable[tuple[int, Record]], digest: str) -> list[tuple[int, Record]]:
    found = []
    for number, record in records:
        # ``output``: the one video of a record; ``outputs``: every file a
        # ComfyUI prompt saved (the ComfyUI pack writes both).
        many = record.fields.get("outputs")
        outs = [record.fields.get("output"), *(many if isinstance(many, list) else ())]
        if any(isinstance(o, Mapping) and o.get("sha256") == digest for o in outs):
            found.append((number, record))
    return found


# -- verification -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogProblem:
    """One break in the log: the line it is on and what kind of tampering it looks like.

    ``kind`` is one of ``edited``, ``deleted``, ``inserted``, ``reordered``,
    ``truncated``, ``head``.
    """

    line: int
    kind: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "kind": self.kind, "message": self.message}


@dataclass(frozen=True, slots=True)
class LogReport:
    """The verdict on a whole log."""

    path: str
    records: int
    problems: tuple[LogProblem, ...]
    head_seq: int | None = None
    head_signed_by: str | None = None
    notes: tuple[str, ...] = ()
    #: Every readable record with its line number, as :func:`read_records` gives them.
    parsed: tuple[tuple[int, Record], ...] = field(default=(), repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "path": self.path,
            "records": self.records,
            "head_seq": self.head_seq,
            "head_signed_by": self.head_signed_by,
            "problems": [p.to_dict() for p in self.problems],
            "notes": list(self.notes),
        }


@dataclass(slots=True)
class _Entry:
    line: int
    sha256: str
    record: Record | None
    error: _BadLine | None


def verify_log(
    path: str | Path,
    public_key: PublicKey | str | Path | None = None,
    *,
    lock_timeout: float = 60.0,
) -> LogReport:
    """Check every line of the log and the hash chain; name the line of each break.

    With ``public_key`` the signed head must exist and verify; without it a head
    that exists is still checked for consistency (it catches truncation) but its
    signature is not, which the report notes.
    """
    log = Path(path)
    hp = head_path(log)
    # Lines and head are read under the writers' lock: an append in progress
    # would otherwise look like a torn line, or a head ahead of the file.
    reading = _locked(log, lock_timeout, optional=True) if log.is_file() else nullcontext()
    with reading:
        entries = [_entry(number, line, complete) for number, line, complete in _lines(log)]
        head = read_bounded(hp, MAX_HEAD_BYTES, kind="signed log head") if hp.exists() else None
    problems, ambiguous = _check_chain(entries)
    notes: list[str] = []
    head_seq, signer = _check_head(hp, head, entries, public_key, problems, notes)
    for p in list(problems):
        # The head says the last line itself changed: then so did its prev, and
        # the line before it is innocent.
        if p.kind == "edited" and p.line in ambiguous and ambiguous[p.line] in problems:
            problems.remove(ambiguous[p.line])
    problems.sort(key=lambda p: p.line)
    parsed = tuple((e.line, e.record) for e in entries if e.record is not None)
    return LogReport(
        str(log), len(entries), tuple(problems), head_seq, signer, tuple(notes), parsed
    )


def _entry(number: int, line: bytes, complete: bool) -> _Entry:
    digest = hashlib.sha256(line).hexdigest()
    if not complete:
        err = _BadLine(
            "truncated",
            f"torn last line ({len(line)} bytes, no trailing newline): an interrupted "
            "write or a truncated file; `sonic-registry audit recover` moves it aside",
        )
        return _Entry(number, digest, None, err)
    try:
        return _Entry(number, digest, _parse_line(line), None)
    except _BadLine as exc:
        return _Entry(number, digest, None, exc)


def _check_chain(entries: Sequence[_Entry]) -> tuple[list[LogProblem], dict[int, LogProblem]]:
    """Walk the chain in file order; diagnose each break once and resynchronise.

    Also returns the diagnoses that only the signed head can settle: line ->
    the problem blamed on the line before it.
    """
    problems: list[LogProblem] = []
    ambiguous: dict[int, LogProblem] = {}
    flagged: set[int] = set()

    def report(line: int, kind: str, message: str) -> None:
        if line not in flagged:
            flagged.add(line)
            problems.append(LogProblem(line, kind, message))

    position: dict[str, int] = {GENESIS: 0}  # the first record chains to "line 0"
    for e in entries:
        position.setdefault(e.sha256, e.line)
    prev_hash, prev_seq, prev_line = GENESIS, 0, 0
    skip: set[int] = set()
    for idx, e in enumerate(entries):
        i = e.line
        if i in skip:
            continue
        nxt = entries[idx + 1] if idx + 1 < len(entries) else None
        chains_back = nxt is not None and nxt.record is not None and nxt.record.prev == prev_hash
        if e.record is None:
            assert e.error is not None
            if chains_back and e.error.kind != "truncated":
                # The chain goes on around this line: it was added, not changed.
                report(i, "inserted", f"not part of the chain ({e.error.message})")
                continue
            report(i, e.error.kind, e.error.message)
            prev_hash, prev_seq, prev_line = e.sha256, prev_seq + 1, i
            continue
        r = e.record
        if r.prev == prev_hash and r.seq == prev_seq + 1:
            prev_hash, prev_seq, prev_line = e.sha256, r.seq, i
            continue
        j = position.get(r.prev)
        if prev_line and e.sha256 == entries[idx - 1].sha256:
            # An exact copy of the line above: a replayed record.
            report(i, "inserted", f"duplicate of line {prev_line} (a replayed record)")
            continue
        if j is not None and nxt is not None and j == nxt.line and chains_back:
            report(
                i,
                "reordered",
                f"lines {i} and {nxt.line} are swapped (record seq {r.seq} "
                f"comes before seq {nxt.record.seq if nxt.record else '?'})",
            )
            skip.add(nxt.line)
            prev_hash, prev_seq, prev_line = e.sha256, r.seq, nxt.line
            continue
        if chains_back:
            report(
                i,
                "inserted",
                f"not part of the chain: line {nxt.line if nxt else '?'} "
                f"chains to line {prev_line}, so this line was inserted",
            )
            continue
        if j is not None and j > i:
            report(
                i,
                "reordered",
                f"out of order: record seq {r.seq} follows the record now at line {j}",
            )
        elif j is not None and j < prev_line:
            first = j + 1
            span = f"line {first}" if first == prev_line else f"lines {first}-{prev_line}"
            report(first, "inserted", f"{span} inserted: line {i} chains to line {j}")
        elif r.prev == prev_hash:
            report(i, "edited", f"seq is {r.seq}, expected {prev_seq + 1} (edited)")
        elif prev_line in flagged:
            pass  # a consequence of the problem already reported on the line above
        elif r.seq == prev_seq + 1:
            next_chains_here = (
                nxt is not None and nxt.record is not None and (nxt.record.prev == e.sha256)
            )
            if not prev_line:
                report(i, "edited", "prev of the first record is not 64 zeros")
            elif nxt is not None and not next_chains_here:
                # Neither neighbour chains to this line: its own prev was rewritten.
                report(i, "edited", "prev changed after it was written (matches no line)")
            else:
                report(
                    prev_line,
                    "edited",
                    f"changed after it was written: its sha256 no "
                    f"longer matches the prev of line {i}",
                )
                if nxt is None:
                    # Last line: its own prev may be what changed; the signed head,
                    # if any, decides (see verify_log).
                    ambiguous[i] = problems[-1]
        elif r.seq > prev_seq + 1:
            missing = prev_seq + 1
            span = f"seq {missing}" if r.seq - 1 == missing else f"seq {missing}-{r.seq - 1}"
            report(i, "deleted", f"record {span} missing before this line (deleted)")
        elif r.seq <= prev_seq:
            report(i, "reordered", f"out of order: seq {r.seq} after seq {prev_seq}")
        else:  # pragma: no cover - every case is handled above
            report(i, "edited", "hash chain broken")
        prev_hash, prev_seq, prev_line = e.sha256, r.seq, i
    return problems, ambiguous


# -- signed head ----------------------------------------------------------------------


def _head_payload(log: Path, record: Record) -> bytes:
    """An in-toto Statement whose subject is the log's chain head.

    The subject digest is the sha256 of the last record's line, which commits to
    every earlier line through the ``prev`` chain, so signing it signs the log
    up to ``seq`` without re-hashing the whole file on every append.
    """
    return canonical_bytes(
        {
            "_type": _STATEMENT_TYPE,
            "subject": [{"name": log.name, "digest": {"sha256": record.sha256}}],
            "predicateType": HEAD_PREDICATE_TYPE,
            "predicate": {"seq": record.seq},
        }
    )


def _write_head(log: Path, record: Record, key: PrivateKey) -> Path:
    from .signing import Envelope

    envelope = Envelope(payload=_head_payload(log, record)).signed_by(key)
    target = head_path(log)
    atomic_write_bytes(target, envelope.to_json())
    return target


def sign_head(path: str | Path, key: PrivateKey, *, lock_timeout: float = 60.0) -> Path:
    """Sign the current last record of an existing log; returns the head file's path."""
    log = Path(path)
    with _locked(log, lock_timeout):
        last: Record | None = None
        for number, line, complete in _lines(log):
            if not complete:
                raise UnreadableInputError(str(log), f"line {number} is torn; run audit recover")
            try:
                last = _parse_line(line)
            except _BadLine as exc:
                raise UnreadableInputError(str(log), f"line {number}: {exc.message}") from None
        if last is None:
            raise UnreadableInputError(str(log), "log is empty, nothing to sign")
        return _write_head(log, last, key)


def _head_fields(payload: bytes, where: Path) -> tuple[int | None, str | None]:
    try:
        head = loads_strict(payload, where=str(where))
    except InvalidManifest:
        return None, None
    if not isinstance(head, dict) or head.get("predicateType") != HEAD_PREDICATE_TYPE:
        return None, None
    subjects, predicate = head.get("subject"), head.get("predicate")
    if not (isinstance(subjects, list) and len(subjects) == 1 and isinstance(predicate, dict)):
        return None, None
    subject = subjects[0]
    digests = subject.get("digest") if isinstance(subject, dict) else None
    digest = digests.get("sha256") if isinstance(digests, dict) else None
    seq = predicate.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or not isinstance(digest, str):
        return None, None
    return seq, digest


def _check_head(
    hp: Path,
    data: bytes | None,
    entries: Sequence[_Entry],
    public_key: PublicKey | str | Path | None,
    problems: list[LogProblem],
    notes: list[str],
) -> tuple[int | None, str | None]:
    from .signing import Envelope, PublicKey, load_public_key
    from .trust import TrustStore, get_verification_result

    if data is None:
        if public_key is not None:
            problems.append(LogProblem(0, "head", f"{hp}: no signed head, but a key was given"))
        else:
            notes.append("no signed head: removing records from the end would go unnoticed")
        return None, None
    envelope = Envelope.from_json(data, where=str(hp))
    signer: str | None = None
    if public_key is not None:
        key = public_key if isinstance(public_key, PublicKey) else load_public_key(public_key)
        # The same trust decision as a release's envelope, with the given key alone.
        store = TrustStore.from_public_keys([key])
        result = get_verification_result(store, envelope.signatures, envelope.pae(), where=str(hp))
        if not result.verified():
            problems.append(LogProblem(0, "head", f"{hp}: not signed by key {key.keyid[:16]}"))
            return None, None
        signer = key.keyid
    else:
        notes.append(f"{hp}: signature not checked (no public key given)")
    seq, digest = _head_fields(envelope.payload, hp)
    if seq is None or digest is None:
        problems.append(LogProblem(0, "head", f"{hp}: not an audit-log head statement"))
        return None, signer
    by_seq = {e.record.seq: e for e in entries if e.record is not None}
    last_seq = max(by_seq, default=0)
    target = by_seq.get(seq)
    if target is None:
        problems.append(
            LogProblem(
                len(entries) + 1 if seq > last_seq else 0,
                "truncated",
                f"the signed head covers seq {seq} but the log ends at seq {last_seq}: "
                "records were removed from the end",
            )
        )
    elif target.sha256 != digest:
        problems.append(
            LogProblem(
                target.line,
                "edited",
                f"record seq {seq} does not match the signed head",
            )
        )
    elif last_seq > seq:
        uncovered = f"records seq {seq + 1}-{last_seq} are not covered by the signed head"
        if signer is not None:
            # Whoever signs heads re-signs on every append; records past the head
            # were appended without the key (or forged after the fact).
            problems.append(LogProblem(target.line + 1, "inserted", uncovered))
        else:
            notes.append(uncovered)
    return seq, signer


# -- building a record ----------------------------------------------------------------


class VerifiedLike(Protocol):
    """What :func:`generation_record` needs from ``bundle.VerifiedRelease``."""

    @property
    def release(self) -> Release: ...
    @property
    def manifest_digest(self) -> str: ...
    @property
    def files(self) -> Mapping[str, FileDigest]: ...
    @property
    def channel(self) -> str: ...


def _file_digests(path: Path) -> tuple[str, str, int]:
    """(sha256, md5, size) of a file in one read; md5 because video tools print it."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    with reading(path) as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), size


def output_digest(path: str | Path) -> dict[str, Any]:
    """``{path, sha256, md5, size}`` of a generated file, as records store it."""
    sha, md5, size = _file_digests(Path(path))
    return {"path": str(path), "sha256": sha, "md5": md5, "size": size}


def runtime_versions() -> dict[str, str | None]:
    import platform
    from importlib import metadata

    def version_of(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    # Read torch's version from its metadata: importing torch to log it would
    # cost seconds and is not needed to know which build ran.
    return {
        "sonic_registry": __version__,
        "torch": version_of("torch"),
        "python": platform.python_version(),
    }


def generation_record(
    verified: VerifiedLike,
    params: Mapping[str, Any],
    *,
    audio: str | Path | AudioInfo | None = None,
    duration: float | None = None,
    output: str | Path | None = None,
    device: str = "cpu",
    warnings: Sequence[str] = (),
    runtime: Mapping[str, str | None] | None = None,
    time: datetime | None = None,
) -> dict[str, Any]:
    """The fields of one log record for a generation made from ``verified``.

    ``runtime`` adds or overrides version entries (the reference runtime adds
    its own version); torch's version is read from package metadata.
    """
    from .audio import AudioInfo, measure_audio

    release = verified.release
    components = {
        role: {
            "paths": {
                name: verified.files[name].sha256 for name in comp.paths if name in verified.files
            },
            "interface": comp.interface,
            "training_step": comp.training_step,
        }
        for role, comp in release.components.items()
    }
    record: dict[str, Any] = {
        "time": format_time(time or datetime.now(UTC)),
        "release": {
            "id": release.release_id,
            "manifest_sha256": verified.manifest_digest,
            "channel": verified.channel,
        },
        "components": components,
        "runtime": {**runtime_versions(), **(runtime or {})},
        "device": str(device),
        "params": dict(params),
        "duration": duration,
        "warnings": list(warnings),
    }
    if audio is not None:
        info = audio if isinstance(audio, AudioInfo) else measure_audio(audio)
        sha, _md5, size = _file_digests(Path(info.path))
        record["audio"] = {
            "path": str(info.path),
            "sha256": sha,
            "size": size,
            "duration": info.duration,
            "sample_rate": info.sample_rate,
        }
    else:
        record["audio"] = None
    record["output"] = output_digest(output) if output is not None else None
    return record
