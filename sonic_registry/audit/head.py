"""The signed head: a DSSE envelope over ``{seq, sha256}`` of the log's last line.

Removing whole records from the *end* of the log leaves a valid shorter chain;
only a signed head (``<log>.head.json``) catches that. The head is an in-toto
Statement, like a release's envelope, and its signature is judged by the same
trust policy (:func:`sonic_registry.trust.get_verification_result`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..canonical import canonical_bytes, loads_strict
from ..errors import InvalidManifest, UnreadableInputError
from ..fileio import atomic_write_bytes
from .log import BadLine, Record, head_path, locked, parse_line, read_lines

if TYPE_CHECKING:
    from ..signing import PrivateKey, PublicKey
    from .verify import LogEntry, LogProblem

__all__ = ["HEAD_PREDICATE_TYPE", "MAX_HEAD_BYTES", "check_head", "sign_head", "write_head"]

#: The head is an in-toto Statement (the same envelope type as releases); this
#: predicate type keeps a release envelope from ever passing for a log head.
HEAD_PREDICATE_TYPE = "https://sonic_registry/audit-head/v1"
_STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
#: Largest signed head read: a one-statement DSSE envelope is well under a kilobyte.
MAX_HEAD_BYTES = 1024 * 1024


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


def write_head(log: Path, record: Record, key: PrivateKey) -> Path:
    from ..signing import Envelope

    envelope = Envelope(payload=_head_payload(log, record)).signed_by(key)
    target = head_path(log)
    atomic_write_bytes(target, envelope.to_json())
    return target


def sign_head(path: str | Path, key: PrivateKey, *, lock_timeout: float = 60.0) -> Path:
    """Sign the current last record of an existing log; returns the head file's path."""
    log = Path(path)
    with locked(log, lock_timeout):
        last: Record | None = None
        for number, line, complete in read_lines(log):
            if not complete:
                raise UnreadableInputError(str(log), f"line {number} is torn; run audit recover")
            try:
                last = parse_line(line)
            except BadLine as exc:
                raise UnreadableInputError(str(log), f"line {number}: {exc.message}") from None
        if last is None:
            raise UnreadableInputError(str(log), "log is empty, nothing to sign")
        return write_head(log, last, key)


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


def check_head(
    hp: Path,
    data: bytes | None,
    entries: Sequence[LogEntry],
    public_key: PublicKey | str | Path | None,
    problems: list[LogProblem],
    notes: list[str],
) -> tuple[int | None, str | None]:
    from ..signing import Envelope, PublicKey, load_public_key
    from ..trust import TrustStore, get_verification_result
    from .verify import LogProblem

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
