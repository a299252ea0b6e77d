"""Reading a TUF-published registry with python-tuf's ngclient, through a local cache.

Two layers, each doing one job (docs/registry.md):

1. **TUF (freshness and consistency).** ``tuf.ngclient.Updater`` starts from
   the registry's pinned ``root.json`` and refreshes timestamp, snapshot and
   targets metadata; it refuses expired (frozen), rolled-back, mixed or
   badly signed metadata. The bins (hashed-bin delegations) say which
   envelopes exist and their exact sha256 and length; an envelope whose bytes
   differ is refused before it is stored.
2. **The caller's trust store (release authority).** Every envelope TUF let
   through is then verified with the caller's own keys, exactly as for a
   local directory; TUF never makes a release trusted.

The cache (``<user cache>/sonic-registry/registries/<hash of URL>/``) holds
ngclient's metadata and one SQLite file: the envelopes TUF verified (by
sha256), which bin lists which target, and the index of the envelopes that
verified with the trust store (fingerprinted, so a changed trust store
re-verifies from the cache without downloading). A refresh of an unchanged
registry costs two small requests; one new release costs five.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    SonicRegistryError,
    StaleRegistryError,
    UnreadableInputError,
    UsageError,
)
from ..fileio import read_bounded
from . import index as ix
from .fetch import MAX_DOWNLOAD_BYTES, Fetcher, HttpError
from .tuf_repo import METADATA_DIR, hashed_name
from .tuf_sync import BinSync, Prefetch, fingerprint, utc_text

if TYPE_CHECKING:
    from tuf.api.metadata import TargetFile
    from tuf.ngclient import Updater

    from ..trust import TrustStore
    from .core import ReleaseSummary

__all__ = ["TufSource", "cache_dir", "pinned_root", "start_requests"]

#: The cache's SQLite file (its name changes with its schema).
CACHE_NAME = "cache-v2.sqlite"
_CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS targets (
    path TEXT PRIMARY KEY, bin TEXT NOT NULL, sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS targets_by_bin ON targets (bin);
CREATE TABLE IF NOT EXISTS bins (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS summaries (
    envelope TEXT PRIMARY KEY, valid_until TEXT NOT NULL, model TEXT NOT NULL,
    version TEXT NOT NULL, serial INTEGER NOT NULL, channel TEXT NOT NULL,
    expires TEXT NOT NULL, roles TEXT NOT NULL, data TEXT NOT NULL,
    version_key TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS summaries_in_order ON summaries (model, version_key, version);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS releases_by_envelope ON releases (envelope);
"""


def _cache_home() -> Path:
    explicit = os.environ.get("SONIC_REGISTRY_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sonic-registry"


def cache_dir(location: str) -> Path:
    """The per-registry cache directory (one per URL, under the user's cache dir)."""
    key = hashlib.sha256(location.rstrip("/").encode()).hexdigest()[:24]
    return _cache_home() / "registries" / key


def pinned_root(location: str, root_file: Path | None) -> bytes | None:
    """The trust anchor: ``--registry-root FILE``, else the root cached earlier, else None."""
    if root_file is not None:
        data = read_bounded(root_file, 1 << 20, kind="TUF root.json")
        _check_root(data, str(root_file))
        return data
    cached = cache_dir(location) / METADATA_DIR / "root.json"
    return cached.read_bytes() if cached.is_file() else None


def _check_root(data: bytes, where: str) -> None:
    from tuf.api.metadata import Metadata, Root

    try:
        md = Metadata[Root].from_bytes(data)
    except Exception as exc:  # python-tuf raises several types for bad input
        raise UsageError(
            where, f"expected a TUF root.json, found unreadable metadata: {exc}"
        ) from exc
    if not isinstance(md.signed, Root):
        raise UsageError(where, f"expected a TUF root.json, found {md.signed.type} metadata")


def _tuf_error(location: str, exc: BaseException) -> SonicRegistryError:
    """One clear line for each way the TUF layer refuses the registry."""
    from tuf.api import exceptions as tx

    cause = exc.__cause__
    if isinstance(exc, tx.DownloadHTTPError):
        return UnreadableInputError(location, f"cannot download TUF metadata: {exc}")
    if isinstance(exc, tx.DownloadError):
        if isinstance(cause, SonicRegistryError):
            return cause
        return UnreadableInputError(location, f"cannot download TUF metadata: {exc}")
    kinds = [
        (
            tx.ExpiredMetadataError,
            "TUF metadata expired (a frozen mirror, or no recent `registry publish`)",
        ),
        (tx.BadVersionNumberError, "TUF rollback or mix-and-match refused"),
        (tx.LengthOrHashMismatchError, "TUF metadata does not match the snapshot"),
        (tx.UnsignedMetadataError, "TUF signature check failed"),
    ]
    for kind, words in kinds:
        if isinstance(exc, kind):
            return StaleRegistryError(location, f"{words}: {exc}")
    return StaleRegistryError(location, f"TUF check failed: {exc}")


def start_requests(location: str, root: bytes, fetcher: Fetcher) -> Prefetch:
    """The refresh's first two requests, started now (see :func:`.core.start_refresh`)."""
    prefetch = Prefetch(fetcher)
    _first_requests(location.rstrip("/") + "/", cache_dir(location), root, prefetch)
    return prefetch


def _first_requests(
    base: str, cache: Path, root: bytes, prefetch: Prefetch
) -> tuple[str | None, str] | None:
    """Start the two requests every refresh makes: the next root version and the timestamp.

    Returns their URLs (the root probe is None when that root is already
    cached), or None for a root ngclient will refuse. Starting a URL twice
    starts it once.
    """
    try:
        version = int(json.loads(root)["signed"]["version"])
    except (ValueError, KeyError, TypeError):
        return None  # ngclient reports the bad root
    probe: str | None = None
    history = cache / METADATA_DIR / "root_history" / f"{version + 1}.root.json"
    if not history.exists():
        probe = f"{base}{METADATA_DIR}/{version + 1}.root.json"
        prefetch.start(probe)
    timestamp = f"{base}{METADATA_DIR}/timestamp.json"
    prefetch.start(timestamp)
    return probe, timestamp


class _TufFetcher:
    """ngclient's fetcher seam over our bounded :class:`~.fetch.Fetcher`."""

    def __new__(cls, inner: Fetcher) -> Any:
        from tuf.api import exceptions as tx
        from tuf.ngclient import FetcherInterface

        class Adapter(FetcherInterface):
            def _fetch(self, url: str) -> Iterator[bytes]:
                try:
                    data = inner.fetch(url, MAX_DOWNLOAD_BYTES)
                except HttpError as exc:
                    raise tx.DownloadHTTPError(str(exc), exc.status) from exc
                return iter([data])

        return Adapter()


class TufSource:
    """A TUF-published registry, refreshed into the cache on the first query."""

    writable = False

    def __init__(
        self,
        location: str,
        root: bytes,
        trust: TrustStore,
        problems: list[str],
        fetcher: Fetcher,
    ) -> None:
        self.location = location
        self.base = location.rstrip("/") + "/"
        self.cache = cache_dir(location)
        self._root = root
        self._trust = trust
        self.problems = problems
        self._fetcher = fetcher
        self._conn: sqlite3.Connection | None = None
        self._synced = False

    # -- the cache ----------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self.cache.mkdir(parents=True, exist_ok=True)
            conn = ix.connect(self.cache / CACHE_NAME)
            # A cache, rebuilt from the server when lost: WAL with synchronous=NORMAL
            # commits without an fsync each (a first refresh commits once per bin,
            # and the bins grow in number with the registry); a crash can only lose
            # the newest commits, never leave a half-written one.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.executescript(_CACHE_SCHEMA)
            self._conn = conn
        return self._conn

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]:
        if not self._synced:
            self.sync()
        return self._db().execute(sql, args).fetchall()

    def read(self, rel: str) -> bytes:
        row = (
            self._db()
            .execute(
                "SELECT e.data FROM targets t JOIN envelopes e ON t.sha256 = e.sha256 "
                "WHERE t.path = ?",
                (rel,),
            )
            .fetchone()
        )
        if row is None:
            raise UnreadableInputError(f"{self.location}/{rel}", "not in the local cache")
        return bytes(row[0])

    def summaries(self) -> Iterator[ReleaseSummary]:
        """Every indexed release in PEP 440 order, as verified when it was cached.

        Refreshes first, then streams rows straight from SQLite (the index on
        ``version_key`` gives the order without sorting), so memory does not
        grow with the number of releases. A release whose verdict has lapsed
        since it was cached (its expiry or a key's) is left out.
        """
        from .core import ReleaseSummary

        if not self._synced:
            self.sync()
        cursor = self._db().execute(
            "SELECT s.model, s.version, s.serial, s.channel, s.expires, s.roles, s.data "
            "FROM summaries s JOIN releases r ON s.envelope = r.envelope "
            "WHERE s.valid_until > ? ORDER BY s.model, s.version_key, s.version",
            (utc_text(datetime.now(UTC)),),
        )
        return (
            ReleaseSummary(m, v, int(n), c, e, tuple(roles.split("\t")), d)
            for m, v, n, c, e, roles, d in cursor
        )

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- refreshing -------------------------------------------------------------------

    def _updater(self, fetcher: Fetcher) -> Updater:
        from tuf.ngclient import Updater, UpdaterConfig

        metadata = self.cache / METADATA_DIR
        metadata.mkdir(parents=True, exist_ok=True)
        return Updater(
            metadata_dir=str(metadata),
            metadata_base_url=f"{self.base}{METADATA_DIR}/",
            target_base_url=self.base,
            fetcher=_TufFetcher(fetcher),
            config=UpdaterConfig(prefix_targets_with_hash=False),
            bootstrap=self._root,
        )

    def sync(self) -> None:
        """Refresh the TUF metadata and bring the cache and index in line with it.

        An unchanged registry is recognised without python-tuf
        (:func:`.tuf_fresh.unchanged`: identical bytes to the verified
        timestamp, nothing expired, no new root); anything else is a full
        ngclient refresh, which reuses the two requests already made.
        """
        from . import tuf_fresh

        self._synced = True
        self.cache.mkdir(parents=True, exist_ok=True)
        # Reuse the requests start_refresh started (Prefetch hands each URL out once).
        fetcher = self._fetcher
        prefetch = fetcher if isinstance(fetcher, Prefetch) else Prefetch(fetcher)
        try:
            urls = _first_requests(self.base, self.cache, self._root, prefetch)
            db = self._db()
            # One read snapshot for the check and every query after it, so a
            # refresh by another process cannot change the index in between.
            db.execute("BEGIN")
            fp = fingerprint(self._trust)
            if urls is not None and tuf_fresh.unchanged(db, self._root, fp, prefetch, urls):
                return  # the snapshot ends with close()
            db.execute("COMMIT")
            from ..locks import file_lock

            # ngclient's metadata directory is single-writer: one refresh per cache at a time.
            with file_lock(self.cache / "refresh", timeout=120):
                self._sync(prefetch)
        finally:
            prefetch.close()

    def _sync(self, prefetch: Prefetch) -> None:
        from tuf.api import exceptions as tx

        from . import tuf_fresh

        # Off until this refresh completes: a refresh that fails after ngclient
        # stored newer metadata must not leave the older timestamp "unchanged"
        # (serving it again would be a rollback, which ngclient refuses).
        db = self._db()
        tuf_fresh.forget_fresh(db)
        try:
            updater = self._updater(prefetch)
            updater.refresh()
            # python-tuf has no public call to list a role's targets: read the
            # snapshot the updater trusts and load each changed bin with the
            # updater's own verified loader.
            # A snapshot keeps listing the bins of an older layout (it may never
            # drop a file); only those the trusted targets delegate to count.
            snapshot = updater._trusted_set.snapshot
            top = updater._trusted_set.targets
            succinct = top.delegations.succinct_roles if top.delegations else None
            bins = {
                name[: -len(".json")]: meta.version
                for name, meta in snapshot.meta.items()
                if succinct is not None and succinct.is_delegated_role(name[: -len(".json")])
            }
            BinSync(self, updater, bins, prefetch).run()
            tuf_fresh.record_fresh(db, updater, self.cache / METADATA_DIR)
        except (tx.RepositoryError, tx.DownloadError) as exc:
            raise _tuf_error(self.location, exc) from exc

    # -- used by _Sync ------------------------------------------------------------------

    def target_url(self, target: TargetFile, *, hashed: bool = False) -> str:
        """Where a target is served (``hashed``: under its sha256, as packs are)."""
        rel = hashed_name(target.path, target.hashes["sha256"]) if hashed else target.path
        return self.base + rel

    def fetch_target(self, fetcher: Fetcher, target: TargetFile, *, hashed: bool = False) -> bytes:
        """Download one target and check it against its signed targets entry."""
        from tuf.api import exceptions as tx

        url = self.target_url(target, hashed=hashed)
        try:
            data = fetcher.fetch(url, min(target.length, MAX_DOWNLOAD_BYTES))
        except HttpError as exc:
            if exc.status == 404:
                raise StaleRegistryError(
                    url, "withheld: listed in the signed TUF targets but not served (HTTP 404)"
                ) from exc
            raise
        try:
            target.verify_length_and_hashes(data)
        except tx.LengthOrHashMismatchError as exc:
            raise StaleRegistryError(
                url, f"does not match its signed TUF targets entry ({exc}); refused, not cached"
            ) from exc
        return data
