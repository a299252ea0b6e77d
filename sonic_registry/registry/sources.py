"""Read-only registry sources kept in memory: given envelopes, and a plain remote listing.

:class:`MemorySource` indexes releases the caller already holds (a model
repository's own envelopes, or statements the runtime has just verified).
:class:`PlainRemoteSource` reads a published directory over ``file://`` or
``http(s)://`` through a :class:`~.fetch.Fetcher`: it downloads the unsigned
``releases.json`` and every envelope it lists, verifies each with the caller's
trust store, and indexes them in memory. Nothing is downloaded until the first
query. Without signed TUF metadata it cannot tell whether the server withheld
a newer release, and says so once in :attr:`problems`.
"""

from __future__ import annotations

import hashlib
import sqlite3
import urllib.parse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..canonical import loads_strict
from ..errors import InvalidManifest, UnreadableInputError, UsageError, VerificationError
from . import index as ix
from .fetch import MAX_DOWNLOAD_BYTES, Fetcher

if TYPE_CHECKING:
    from ..bundle import VerifiedStatement

__all__ = ["UNSIGNED_LISTING_WARNING", "MemorySource", "PlainRemoteSource"]

UNSIGNED_LISTING_WARNING = (
    "releases.json is not signed: this client cannot detect a server that withholds a newer "
    "release; read a TUF-published registry with --registry-root root.json (publishers: "
    "`sonic-registry registry init`)"
)


class MemorySource:
    """An in-memory index of verified statements (newest serial per model@version)."""

    writable = False

    def __init__(self, location: str, problems: list[str]) -> None:
        self.location = location
        self.problems = problems
        self.statements: dict[str, VerifiedStatement] = {}  # rel -> verified statement
        self._conn: sqlite3.Connection | None = ix.memory_index()

    def remember(self, statement: VerifiedStatement, envelope_sha: str) -> None:
        """Index a verified statement unless a newer serial of it is already indexed."""
        conn = self._db()
        r = statement.release
        old = ix.stored_serial(conn, r.model, r.version)
        if old is not None and old >= r.serial:
            return
        rel = ix.envelope_rel(r.model, r.version, r.serial)
        self.statements[rel] = statement
        with ix.transaction(conn):
            ix.index_statement(conn, statement, rel, envelope_sha)

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise UsageError(self.location, "the registry is closed")
        return self._conn

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        return self._db().execute(sql, args).fetchall()

    def read(self, rel: str) -> bytes:
        # Every indexed release is in self.statements; the facade asks there first.
        raise KeyError(rel)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class PlainRemoteSource(MemorySource):
    """A published registry read through its unsigned ``releases.json`` (lazily)."""

    def __init__(
        self,
        location: str,
        problems: list[str],
        fetcher: Fetcher,
        verify: Callable[[bytes, str], VerifiedStatement],
    ) -> None:
        super().__init__(location, problems)
        self.base = location.rstrip("/") + "/"
        self._fetcher = fetcher
        self._verify = verify
        self._loaded = False

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        if not self._loaded:
            self._loaded = True
            self._load()
        return super().rows(sql, args)

    def _fetch(self, rel: str) -> bytes:
        url = urllib.parse.urljoin(self.base, urllib.parse.quote(rel))
        return self._fetcher.fetch(url, MAX_DOWNLOAD_BYTES)

    def _entries(self) -> list[tuple[str, Any]]:
        where = f"{self.location}/{ix.LISTING_NAME}"
        listing = loads_strict(self._fetch(ix.LISTING_NAME), where=where)
        entries = listing.get("releases") if isinstance(listing, dict) else None
        if not isinstance(entries, list):
            raise InvalidManifest("releases", "expected a list of {path, sha256}", path=where)
        out: list[tuple[str, Any]] = []
        for i, entry in enumerate(entries):
            rel = entry.get("path") if isinstance(entry, dict) else None
            if not isinstance(rel, str) or not rel.startswith(f"{ix.RELEASES_DIR}/") or ".." in rel:
                raise InvalidManifest(
                    f"releases.{i}.path", f"expected releases/..., found {rel!r}", path=where
                )
            out.append((rel, entry.get("sha256")))
        return out

    def _load(self) -> None:
        if urllib.parse.urlsplit(self.location).scheme != "file":
            self.problems.append(f"{self.location}: {UNSIGNED_LISTING_WARNING}")
        for rel, listed_sha in self._entries():
            where = f"{self.location}/{rel}"
            try:
                data = self._fetch(rel)
            except UnreadableInputError as exc:
                # One bad entry (a 404, an oversized or too slow download) costs only
                # that release; the listing itself failing stays fatal (in _entries).
                self.problems.append(f"{where}: skipped: {exc.detail}")
                continue
            # The listing is unsigned; its digest only catches a mangled download.
            # Trust comes from verifying the envelope with our own keys below.
            sha = hashlib.sha256(data).hexdigest()
            if listed_sha not in (None, sha):
                self.problems.append(f"{where}: skipped: digest differs from {ix.LISTING_NAME}")
                continue
            try:
                statement = self._verify(data, where)
            except (VerificationError, UsageError) as exc:
                self.problems.append(f"{where}: skipped: {exc}")
                continue
            r = statement.release
            if rel != ix.envelope_rel(r.model, r.version, r.serial):
                self.problems.append(f"{where}: skipped: holds {r.release_id}")
                continue
            self.remember(statement, sha)
