"""Verifying a log: every line, the hash chain, the signed head; finding a video's record.

Editing, deleting, inserting or reordering any record breaks the chain at a
line :func:`verify_log` names, with the kind of tampering it looks like.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..fileio import read_bounded
from .head import MAX_HEAD_BYTES, check_head
from .log import GENESIS, BadLine, Record, head_path, locked, parse_line, read_lines, read_records
from .record import file_digests

if TYPE_CHECKING:
    from ..signing import PublicKey

__all__ = [
    "LogEntry",
    "LogProblem",
    "LogReport",
    "find_output",
    "find_output_verified",
    "verify_log",
]


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
class LogEntry:
    """One line of the log as read: its number, its sha256, and its record or what is wrong."""

    line: int
    sha256: str
    record: Record | None
    error: BadLine | None


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
    reading = locked(log, lock_timeout, optional=True) if log.is_file() else nullcontext()
    with reading:
        entries = [_entry(number, line, complete) for number, line, complete in read_lines(log)]
        head = read_bounded(hp, MAX_HEAD_BYTES, kind="signed log head") if hp.exists() else None
    walk = _ChainWalk(entries).walk()
    problems, ambiguous = walk.problems, walk.ambiguous
    notes: list[str] = []
    head_seq, signer = check_head(hp, head, entries, public_key, problems, notes)
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


def _entry(number: int, line: bytes, complete: bool) -> LogEntry:
    digest = hashlib.sha256(line).hexdigest()
    if not complete:
        err = BadLine(
            "truncated",
            f"torn last line ({len(line)} bytes, no trailing newline): an interrupted "
            "write or a truncated file; `sonic-registry audit recover` moves it aside",
        )
        return LogEntry(number, digest, None, err)
    try:
        return LogEntry(number, digest, parse_line(line), None)
    except BadLine as exc:
        return LogEntry(number, digest, None, exc)


class _ChainWalk:
    """Walk the chain in file order; diagnose each break once and resynchronise.

    ``ambiguous`` holds the diagnoses that only the signed head can settle:
    line -> the problem blamed on the line before it.
    """

    def __init__(self, entries: Sequence[LogEntry]) -> None:
        self.entries = entries
        self.problems: list[LogProblem] = []
        self.ambiguous: dict[int, LogProblem] = {}
        self.flagged: set[int] = set()
        self.skip: set[int] = set()
        self.position: dict[str, int] = {GENESIS: 0}  # the first record chains to "line 0"
        for e in entries:
            self.position.setdefault(e.sha256, e.line)
        self.prev_hash, self.prev_seq, self.prev_line = GENESIS, 0, 0

    def report(self, line: int, kind: str, message: str) -> None:
        if line not in self.flagged:
            self.flagged.add(line)
            self.problems.append(LogProblem(line, kind, message))

    def walk(self) -> _ChainWalk:
        for idx, e in enumerate(self.entries):
            if e.line in self.skip:
                continue
            nxt = self.entries[idx + 1] if idx + 1 < len(self.entries) else None
            chains_back = (
                nxt is not None and nxt.record is not None and nxt.record.prev == self.prev_hash
            )
            if e.record is None:
                self._unreadable(e, chains_back)
                continue
            r = e.record
            if r.prev == self.prev_hash and r.seq == self.prev_seq + 1:
                self.prev_hash, self.prev_seq, self.prev_line = e.sha256, r.seq, e.line
                continue
            if self._out_of_place(idx, e, r, nxt, chains_back):
                continue
            self._broken_link(e, r, nxt)
            self.prev_hash, self.prev_seq, self.prev_line = e.sha256, r.seq, e.line
        return self

    def _unreadable(self, e: LogEntry, chains_back: bool) -> None:
        assert e.error is not None
        if chains_back and e.error.kind != "truncated":
            # The chain goes on around this line: it was added, not changed.
            self.report(e.line, "inserted", f"not part of the chain ({e.error.message})")
            return
        self.report(e.line, e.error.kind, e.error.message)
        self.prev_hash, self.prev_seq, self.prev_line = e.sha256, self.prev_seq + 1, e.line

    def _out_of_place(
        self, idx: int, e: LogEntry, r: Record, nxt: LogEntry | None, chains_back: bool
    ) -> bool:
        """A replayed, swapped or inserted line: reported, and the chain goes on around it."""
        i, j = e.line, self.position.get(r.prev)
        if self.prev_line and e.sha256 == self.entries[idx - 1].sha256:
            # An exact copy of the line above: a replayed record.
            self.report(i, "inserted", f"duplicate of line {self.prev_line} (a replayed record)")
            return True
        if j is not None and nxt is not None and j == nxt.line and chains_back:
            self.report(
                i,
                "reordered",
                f"lines {i} and {nxt.line} are swapped (record seq {r.seq} "
                f"comes before seq {nxt.record.seq if nxt.record else '?'})",
            )
            self.skip.add(nxt.line)
            self.prev_hash, self.prev_seq, self.prev_line = e.sha256, r.seq, nxt.line
            return True
        if chains_back:
            self.report(
                i,
                "inserted",
                f"not part of the chain: line {nxt.line if nxt else '?'} "
                f"chains to line {self.prev_line}, so this line was inserted",
            )
            return True
        return False

    def _broken_link(self, e: LogEntry, r: Record, nxt: LogEntry | None) -> None:
        """The chain breaks at this line: say whether it was reordered, inserted, edited..."""
        i, j = e.line, self.position.get(r.prev)
        prev_seq, prev_line = self.prev_seq, self.prev_line
        if j is not None and j > i:
            self.report(
                i,
                "reordered",
                f"out of order: record seq {r.seq} follows the record now at line {j}",
            )
        elif j is not None and j < prev_line:
            first = j + 1
            span = f"line {first}" if first == prev_line else f"lines {first}-{prev_line}"
            self.report(first, "inserted", f"{span} inserted: line {i} chains to line {j}")
        elif r.prev == self.prev_hash:
            self.report(i, "edited", f"seq is {r.seq}, expected {prev_seq + 1} (edited)")
        elif prev_line in self.flagged:
            pass  # a consequence of the problem already reported on the line above
        elif r.seq == prev_seq + 1:
            self._edited(e, nxt)
        elif r.seq > prev_seq + 1:
            missing = prev_seq + 1
            span = f"seq {missing}" if r.seq - 1 == missing else f"seq {missing}-{r.seq - 1}"
            self.report(i, "deleted", f"record {span} missing before this line (deleted)")
        elif r.seq <= prev_seq:
            self.report(i, "reordered", f"out of order: seq {r.seq} after seq {prev_seq}")
        else:  # pragma: no cover - every case is handled above
            self.report(i, "edited", "hash chain broken")

    def _edited(self, e: LogEntry, nxt: LogEntry | None) -> None:
        """The seq follows on but the hash does not: this line or the one above changed."""
        i = e.line
        next_chains_here = (
            nxt is not None and nxt.record is not None and (nxt.record.prev == e.sha256)
        )
        if not self.prev_line:
            self.report(i, "edited", "prev of the first record is not 64 zeros")
        elif nxt is not None and not next_chains_here:
            # Neither neighbour chains to this line: its own prev was rewritten.
            self.report(i, "edited", "prev changed after it was written (matches no line)")
        else:
            self.report(
                self.prev_line,
                "edited",
                f"changed after it was written: its sha256 no longer matches the prev of line {i}",
            )
            if nxt is None:
                # Last line: its own prev may be what changed; the signed head,
                # if any, decides (see verify_log).
                self.ambiguous[i] = self.problems[-1]


def find_output(path: str | Path, output: str | Path) -> list[tuple[int, Record]]:
    """Records whose ``output.sha256`` is the digest of the file ``output``."""
    digest = file_digests(Path(output))[0]
    return _made(read_records(path), digest)


def find_output_verified(
    path: str | Path, output: str | Path, public_key: PublicKey | str | Path | None = None
) -> tuple[list[tuple[int, Record]], LogReport]:
    """:func:`find_output` and :func:`verify_log` together, reading the log once."""
    digest = file_digests(Path(output))[0]
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
