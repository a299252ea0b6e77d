"""The unchanged-registry fast path: a refresh that needs no python-tuf when nothing changed.

Importing python-tuf (with securesystemslib) costs about as much as the whole
refresh of an unchanged registry. When the server's ``timestamp.json`` is
byte-identical to the one a previous *complete* refresh verified, ngclient
would only re-check what it already checked. So, before importing it, the
client makes the same two requests ngclient's refresh starts with (TUF spec
5.3: the next root version, expected absent; then the timestamp) and lists
from the local index when all of these hold:

- the index was completed under the same pinned root and the same trust
  store (both fingerprinted in the cache's ``state`` table by
  :func:`record_fresh`, at the end of a refresh that verified everything);
- the next root version is absent (HTTP 404 or 403, as ngclient reads it):
  no key rotation is pending;
- the timestamp bytes are identical to the verified timestamp recorded then
  (identical bytes to already-verified metadata need no second signature
  check: a signature over the same bytes verifies the same way);
- the earliest expiry of the root, timestamp, snapshot and targets metadata
  of that refresh is still in the future by the current clock, so freeze
  protection stays: an attacker who keeps serving the same timestamp gets
  the fast path only until it expires, exactly as long as ngclient would
  accept it.

Any other answer (a new root, different timestamp bytes, an expiry passed, a
download error, a cache written by another version) falls back to the full
ngclient refresh, which reuses the two downloads already made.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .fetch import HttpError

if TYPE_CHECKING:
    from tuf.ngclient import Updater

    from .tuf_sync import Prefetch

__all__ = ["FRESH_KEY", "forget_fresh", "now", "record_fresh", "unchanged"]

#: The ``state`` row that says which verified timestamp the index is complete for.
FRESH_KEY = "fresh"
#: What ngclient reads as "no newer root" (S3 answers 403 for a missing object).
_ABSENT = (403, 404)


def now() -> datetime:
    """The clock every freshness decision of the fast path reads (tests move it)."""
    return datetime.now(UTC)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def record_fresh(db: sqlite3.Connection, updater: Updater, metadata: Path) -> None:
    """After a complete refresh: the verified timestamp and root, and when they lapse.

    The hashes are of ngclient's persisted copies in ``metadata`` (the bytes it
    verified; for an unchanged timestamp version, the older bytes it kept).
    Called only once every bin is in the index, so a refresh that failed
    halfway never enables the fast path (:func:`forget_fresh` ran before it).
    """
    trusted = updater._trusted_set
    roles = (trusted.root, trusted.timestamp, trusted.snapshot, trusted.targets)
    value = {
        "timestamp": _sha256((metadata / "timestamp.json").read_bytes()),
        "root": _sha256((metadata / "root.json").read_bytes()),
        "expires": min(role.expires for role in roles).astimezone(UTC).isoformat(),
    }
    db.execute("INSERT OR REPLACE INTO state VALUES (?, ?)", (FRESH_KEY, json.dumps(value)))


def forget_fresh(db: sqlite3.Connection) -> None:
    """Before a full refresh changes anything: the fast path is off until one completes."""
    db.execute("DELETE FROM state WHERE key = ?", (FRESH_KEY,))


def unchanged(
    db: sqlite3.Connection,
    root: bytes,
    trust_fingerprint: str,
    prefetch: Prefetch,
    urls: tuple[str | None, str],
) -> bool:
    """True when the registry is provably the one the index was completed for (see above).

    ``urls`` are the next-root probe (None when it was not started) and the
    timestamp, both already started on ``prefetch``; this only peeks at their
    results, so the full refresh that follows a False reuses them.
    """
    rows = dict(db.execute("SELECT key, value FROM state WHERE key IN ('trust', ?)", (FRESH_KEY,)))
    if rows.get("trust") != trust_fingerprint or FRESH_KEY not in rows:
        return False  # the index is for another trust store, or no refresh completed
    try:
        fresh = json.loads(rows[FRESH_KEY])
        expires = datetime.fromisoformat(fresh["expires"])
    except (ValueError, KeyError, TypeError):
        return False
    if fresh.get("root") != _sha256(root):
        return False  # another pinned root: ngclient walks the root chain
    # Freeze protection: identical bytes are only good until they expire.
    if not now() < expires:
        return False  # ngclient refuses it, with its one clear line
    probe, timestamp = urls
    answer = None if probe is None else prefetch.peek(probe)
    if not (isinstance(answer, HttpError) and answer.status in _ABSENT):
        return False  # a new root (key rotation), or an error ngclient reports
    data = prefetch.peek(timestamp)
    # Byte-identical to the timestamp already verified: no re-verification needed.
    return isinstance(data, bytes) and _sha256(data) == fresh.get("timestamp")
