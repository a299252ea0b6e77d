"""The SQLite index of a registry: sha256 -> (model, version, role, path).

The index is a hint, never a source of trust: every answer it gives is
re-checked against an envelope verified with the caller's trust store. A
local directory keeps it in ``index.sqlite`` (rebuildable from the envelopes
alone); remote and in-memory registries keep one in memory.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..bundle import VerifiedStatement

__all__ = [
    "INDEX_NAME",
    "LISTING_NAME",
    "LOCK_TARGET",
    "RELEASES_DIR",
    "IndexRows",
    "connect",
    "envelope_rel",
    "index_rows",
    "index_statement",
    "listing_bytes",
    "memory_index",
    "transaction",
    "version_sort_key",
]

RELEASES_DIR = "releases"
INDEX_NAME = "index.sqlite"
LISTING_NAME = "releases.json"
#: What writers lock (never a file itself): the lock is ``.registry.lock`` in the
#: registry outside git, under ``.git/`` inside a work tree (see :mod:`..locks`).
LOCK_TARGET = ".registry"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    model TEXT NOT NULL, version TEXT NOT NULL, serial INTEGER NOT NULL,
    channel TEXT NOT NULL, manifest_digest TEXT NOT NULL, envelope TEXT NOT NULL,
    envelope_sha256 TEXT NOT NULL,
    PRIMARY KEY (model, version)
);
CREATE TABLE IF NOT EXISTS files (
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, model TEXT NOT NULL,
    version TEXT NOT NULL, role TEXT, path TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_by_sha256 ON files (sha256);
CREATE INDEX IF NOT EXISTS files_by_release ON files (model, version);
"""
#: Every column the queries use: an index.sqlite without one of them is corrupt.
_PROBES = (
    "SELECT model, version, serial, channel, manifest_digest, envelope, envelope_sha256 "
    "FROM releases LIMIT 0",
    "SELECT sha256, size, model, version, role, path FROM files LIMIT 0",
)


def envelope_rel(model: str, version: str, serial: int) -> str:
    """Where a release's envelope lives inside a registry (one name per serial)."""
    return f"{RELEASES_DIR}/{model}/{version}/{serial}.dsse.json"


def connect(path: Path | str) -> sqlite3.Connection:
    """Open (creating when new) an index; sqlite3.DatabaseError when it is no index."""
    conn = sqlite3.connect(str(path), timeout=60.0, isolation_level=None)
    try:
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.executescript(_SCHEMA)
        for probe in _PROBES:
            conn.execute(probe).fetchall()
    except BaseException:
        conn.close()
        raise
    return conn


def memory_index() -> sqlite3.Connection:
    """An empty index that lives as long as its connection (remote and in-memory sources)."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    conn.executescript(_SCHEMA)
    return conn


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on any exception."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@dataclass(frozen=True, slots=True)
class IndexRows:
    """The index rows of one verified release, without the parsed statement.

    A refresh holds a few hundred verified releases between verifying and
    storing them; these rows are a fraction of a statement's size.
    """

    model: str
    version: str
    serial: int
    release: tuple[str, str, int, str, str, str, str]
    files: list[tuple[str, int, str, str, str | None, str]]

    @classmethod
    def of(cls, statement: VerifiedStatement, rel: str, envelope_sha: str) -> IndexRows:
        r = statement.release
        files = [
            (
                s.sha256,
                s.size,
                r.model,
                r.version,
                (c.role if (c := r.component_for_path(name)) else None),
                name,
            )
            for name, s in statement.subjects.items()
        ]
        release = (
            r.model,
            r.version,
            r.serial,
            statement.channel,
            statement.manifest_digest,
            rel,
            envelope_sha,
        )
        return cls(r.model, r.version, r.serial, release, files)


def index_statement(
    conn: sqlite3.Connection, statement: VerifiedStatement, rel: str, envelope_sha: str
) -> None:
    """Replace the index rows of ``statement``'s model@version with its own."""
    index_rows(conn, IndexRows.of(statement, rel, envelope_sha))


def index_rows(conn: sqlite3.Connection, rows: IndexRows) -> None:
    """Replace the index rows of ``rows``' model@version with these."""
    conn.execute("DELETE FROM files WHERE model = ? AND version = ?", (rows.model, rows.version))
    conn.execute("INSERT OR REPLACE INTO releases VALUES (?, ?, ?, ?, ?, ?, ?)", rows.release)
    conn.executemany("INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)", rows.files)


def stored_serial(conn: sqlite3.Connection, model: str, version: str) -> int | None:
    """The serial indexed for model@version, or None."""
    row = conn.execute(
        "SELECT serial FROM releases WHERE model = ? AND version = ?", (model, version)
    ).fetchone()
    return None if row is None else int(row[0])


def listing_bytes(conn: sqlite3.Connection) -> bytes:
    """``releases.json``: the newest envelope per model@version, for plain HTTP clients."""
    from ..canonical import canonical_bytes

    rows = conn.execute(
        "SELECT envelope, envelope_sha256 FROM releases ORDER BY model, version"
    ).fetchall()
    listing: dict[str, Any] = {
        "version": 1,
        "releases": [{"path": str(p), "sha256": str(s)} for p, s in rows],
    }
    return canonical_bytes(listing) + b"\n"


def _int_key(n: int) -> str:
    """A non-negative integer as text that sorts numerically (length first, then digits)."""
    digits = str(n)
    return f"{len(digits):03d}{digits}"


def version_sort_key(text: str) -> str:
    """Text whose byte order is PEP 440 order, so SQLite can sort versions with an index.

    Follows ``packaging``'s own comparison key (epoch, release without
    trailing zeros, pre, post, dev, local) with every part self-delimiting,
    so comparing the concatenation compares the tuple; in a slot "0" stands
    for "sorts before any value", "2" for "after", "1" prefixes a value.
    ``tests/test_registry_listing.py`` checks it against ``Version`` ordering.
    """
    from packaging.version import Version

    v = Version(text)
    release = list(v.release)
    while release and release[-1] == 0:
        release.pop()
    out = [_int_key(v.epoch), *("1" + _int_key(n) for n in release), "0"]
    if v.pre is not None:
        out.append("1" + {"a": "a", "b": "b", "rc": "c"}[v.pre[0]] + _int_key(v.pre[1]))
    else:
        # 1.0.dev0 sorts before 1.0a1 (no pre, no post, a dev part); else after any pre.
        out.append("0" if v.post is None and v.dev is not None else "2")
    out.append("0" if v.post is None else "1" + _int_key(v.post))
    out.append("2" if v.dev is None else "1" + _int_key(v.dev))
    if v.local is None:
        out.append("0")
    else:
        # Local parts: strings sort before numbers; both are lower-case alphanumerics.
        parts = (
            "2" + _int_key(int(p)) if p.isdigit() else "1" + p + "!" for p in v.local.split(".")
        )
        out.append("1" + "".join(parts) + "0")
    return "".join(out)


# The three queries every source answers from its index.
LOOKUP_SQL = (
    "SELECT f.path, f.role, r.envelope FROM files f JOIN releases r "
    "ON f.model = r.model AND f.version = r.version WHERE f.sha256 = ?"
)
GET_SQL = "SELECT envelope FROM releases WHERE model = ? AND version = ?"
ALL_SQL = "SELECT envelope FROM releases"
