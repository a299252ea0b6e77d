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
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..canonical import canonical_bytes
from ..errors import (
    SonicRegistryError,
    StaleRegistryError,
    UnreadableInputError,
    UsageError,
    VerificationError,
)
from ..fileio import read_bounded
from . import index as ix
from .fetch import MAX_DOWNLOAD_BYTES, Fetcher, HttpError
from .tuf_repo import BIN_PREFIX, METADATA_DIR, PACKS_DIR, hashed_name

if TYPE_CHECKING:
    from tuf.api.metadata import TargetFile, Targets
    from tuf.ngclient import Updater

    from ..bundle import VerifiedStatement
    from ..trust import TrustStore

__all__ = ["TufSource", "cache_dir", "pinned_root"]

#: Fetch a bin's pack instead of its envelopes one by one from this many missing.
PACK_FROM = 2
_WORKERS = 16
_CACHE_SCHEMA = """
CREATE TABLE IF NOT EXISTS envelopes (sha256 TEXT PRIMARY KEY, data BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS targets (
    path TEXT PRIMARY KEY, bin TEXT NOT NULL, sha256 TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS targets_by_bin ON targets (bin);
CREATE TABLE IF NOT EXISTS bins (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS summaries (
    envelope TEXT PRIMARY KEY, valid_until TEXT NOT NULL, roles TEXT NOT NULL,
    summary TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _valid_until(statement: VerifiedStatement, trust: TrustStore) -> str:
    """When this verdict lapses: the release's expiry or a signing key's, whichever is first."""
    from ..manifest import parse_time

    ends = [parse_time(statement.release.expires)]
    for sig in statement.envelope.signatures:
        key = trust.keys.get(sig.keyid)
        if key is not None and key.expires:
            ends.append(parse_time(key.expires))
    return _utc(min(ends))


def _fingerprint(trust: TrustStore) -> str:
    return hashlib.sha256(canonical_bytes(trust.to_dict())).hexdigest()


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
            conn = ix.connect(self.cache / "cache.sqlite")
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

    def summaries(self) -> list[tuple[dict[str, Any], list[str]]]:
        """(release dict, roles) of every release, as verified when it was cached."""
        now = _utc(datetime.now(UTC))
        rows = self.rows(
            "SELECT s.summary, s.roles FROM summaries s JOIN releases r ON s.envelope = r.envelope"
            " WHERE s.valid_until > ?",
            (now,),
        )
        return [(json.loads(s), json.loads(roles)) for s, roles in rows]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- refreshing -------------------------------------------------------------------

    def _updater(self) -> Updater:
        from tuf.ngclient import Updater, UpdaterConfig

        metadata = self.cache / METADATA_DIR
        metadata.mkdir(parents=True, exist_ok=True)
        return Updater(
            metadata_dir=str(metadata),
            metadata_base_url=f"{self.base}{METADATA_DIR}/",
            target_base_url=self.base,
            fetcher=_TufFetcher(self._fetcher),
            config=UpdaterConfig(prefix_targets_with_hash=False),
            bootstrap=self._root,
        )

    def sync(self) -> None:
        """Refresh the TUF metadata and bring the cache and index in line with it."""
        from tuf.api import exceptions as tx

        self._synced = True
        try:
            updater = self._updater()
            updater.refresh()
            # python-tuf has no public call to list a role's targets: read the
            # snapshot the updater trusts and load each changed bin with the
            # updater's own verified loader.
            snapshot = updater._trusted_set.snapshot
            bins = {
                name[: -len(".json")]: meta.version
                for name, meta in snapshot.meta.items()
                if name.startswith(f"{BIN_PREFIX}-")
            }
            _Sync(self, updater, bins).run()
        except (tx.RepositoryError, tx.DownloadError) as exc:
            raise _tuf_error(self.location, exc) from exc

    # -- used by _Sync ------------------------------------------------------------------

    def fetch_target(self, target: TargetFile, *, hashed: bool = False) -> bytes:
        """Download one target and check it against its signed targets entry."""
        from tuf.api import exceptions as tx

        rel = hashed_name(target.path, target.hashes["sha256"]) if hashed else target.path
        url = self.base + rel
        try:
            data = self._fetcher.fetch(url, min(target.length, MAX_DOWNLOAD_BYTES))
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


class _Sync:
    """One refresh: diff the trusted bins against the cache, fetch and verify what is new.

    The main thread walks the changed bins with the updater (network waits)
    and owns the SQLite cache; a small pool verifies each bin's new envelopes
    meanwhile, and a larger one downloads them. Each bin is stored in one
    transaction once all of its new envelopes passed TUF's hash check, so an
    interrupted refresh leaves a cache that is old but never unverified.
    """

    def __init__(self, source: TufSource, updater: Updater, bins: dict[str, int]) -> None:
        self.src = source
        self.updater = updater
        self.bins = bins
        self.db = source._db()
        self.fp = _fingerprint(source._trust)

    def _cached_bins(self) -> dict[str, int]:
        """The bins the index is current for; none when the trust store changed."""
        row = self.db.execute("SELECT value FROM state WHERE key = 'trust'").fetchone()
        if row is not None and row[0] == self.fp:
            return dict(self.db.execute("SELECT name, version FROM bins").fetchall())
        with ix.transaction(self.db):
            for table in ("releases", "files", "summaries", "bins", "targets"):
                self.db.execute(f"DELETE FROM {table}")
            self.db.execute("INSERT OR REPLACE INTO state VALUES ('trust', ?)", (self.fp,))
        return {}

    def run(self) -> None:
        cached = self._cached_bins()
        stale = [n for n, v in sorted(self.bins.items()) if cached.get(n) != v]
        with ThreadPoolExecutor(2) as verify_pool, ThreadPoolExecutor(_WORKERS) as net:
            pending: list[tuple[str, int, list[str], Future[list[_Item]]]] = []
            for name in stale:
                new, removed, have, pack = self._diff(name)
                job = verify_pool.submit(self._bin_items, new, have, pack, net)
                pending.append((name, self.bins[name], removed, job))
                self._drain(pending, block=False)
            self._drain(pending, block=True)
        for name in set(cached) - set(self.bins):
            self._store(name, None, self._known(name), [])

    def _drain(
        self, pending: list[tuple[str, int, list[str], Future[list[_Item]]]], *, block: bool
    ) -> None:
        while pending and (block or pending[0][3].done()):
            name, version, removed, job = pending.pop(0)
            self._store(name, version, removed, job.result())

    def _known(self, name: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT path FROM targets WHERE bin = ?", (name,))]

    def _diff(
        self, name: str
    ) -> tuple[list[TargetFile], list[str], dict[str, bytes], TargetFile | None]:
        """A bin's new or changed envelope targets, its dropped paths, cached bytes, pack."""
        targets: Targets = self.updater._load_targets(name, "targets")
        top: Targets = self.updater._trusted_set.targets
        succinct = top.delegations.succinct_roles if top.delegations else None
        known = dict(
            self.db.execute("SELECT path, sha256 FROM targets WHERE bin = ?", (name,)).fetchall()
        )
        new: list[TargetFile] = []
        pack: TargetFile | None = None
        for path, target in targets.targets.items():
            if succinct is None or succinct.get_role_for_target(path) != name:
                self.src.problems.append(f"{path}: skipped: listed by {name}, not delegated to it")
            elif path.startswith(f"{PACKS_DIR}/"):
                pack = target
            elif path.startswith(f"{ix.RELEASES_DIR}/") and known.get(path) != target.hashes.get(
                "sha256"
            ):
                new.append(target)
        changed = {t.path for t in new}
        removed = [p for p in known if p not in targets.targets or p in changed]
        have: dict[str, bytes] = {}
        for target in new:
            sha = target.hashes.get("sha256", "")
            row = self.db.execute("SELECT data FROM envelopes WHERE sha256 = ?", (sha,)).fetchone()
            if row is not None:
                have[sha] = bytes(row[0])
        return new, removed, have, pack

    def _bin_items(
        self,
        new: list[TargetFile],
        have: dict[str, bytes],
        pack: TargetFile | None,
        net: ThreadPoolExecutor,
    ) -> list[_Item]:
        """Download what is not cached (the pack when several are missing), then verify."""
        missing = [t for t in new if t.hashes.get("sha256") not in have]
        if pack is not None and len(missing) >= PACK_FROM:
            have.update(self._from_pack(pack, missing))
        else:
            for target, data in zip(missing, net.map(self.src.fetch_target, missing), strict=True):
                have[target.hashes["sha256"]] = data
        return [_Item.check(self.src, t, have[t.hashes["sha256"]]) for t in new]

    def _from_pack(self, pack: TargetFile, missing: list[TargetFile]) -> dict[str, bytes]:
        """Envelopes out of the bin's pack; each is checked against its own targets entry."""
        from tuf.api import exceptions as tx

        data = self.src.fetch_target(pack, hashed=True)
        where = f"{self.src.base}{pack.path}"
        try:
            envelopes = json.loads(data)["envelopes"]
        except (ValueError, KeyError, TypeError) as exc:
            raise StaleRegistryError(where, f"unreadable pack: {exc}") from exc
        out: dict[str, bytes] = {}
        for target in missing:
            text = envelopes.get(target.path) if isinstance(envelopes, dict) else None
            if not isinstance(text, str):
                raise StaleRegistryError(where, f"the signed pack lacks {target.path}")
            body = text.encode("utf-8")
            try:
                target.verify_length_and_hashes(body)
            except tx.LengthOrHashMismatchError as exc:
                raise StaleRegistryError(
                    f"{self.src.base}{target.path}",
                    f"does not match its signed TUF targets entry ({exc}); refused, not cached",
                ) from exc
            out[target.hashes["sha256"]] = body
        return out

    def _store(
        self, name: str, version: int | None, removed: list[str], items: list[_Item]
    ) -> None:
        """Apply one bin's changes to the cache and index in one transaction."""
        db = self.db
        with ix.transaction(db):
            for rel in removed:
                db.execute("DELETE FROM summaries WHERE envelope = ?", (rel,))
                db.execute("DELETE FROM targets WHERE path = ?", (rel,))
                found = db.execute(
                    "SELECT model, version FROM releases WHERE envelope = ?", (rel,)
                ).fetchone()
                if found is not None:
                    db.execute("DELETE FROM releases WHERE envelope = ?", (rel,))
                    db.execute("DELETE FROM files WHERE model = ? AND version = ?", found)
            for item in items:
                item.store(db, name)
            if version is None:
                db.execute("DELETE FROM bins WHERE name = ?", (name,))
            else:
                db.execute("INSERT OR REPLACE INTO bins VALUES (?, ?)", (name, version))


class _Item:
    """One envelope of a bin: TUF-verified bytes, and the trust store's verdict on them."""

    def __init__(
        self, path: str, sha256: str, data: bytes, verdict: tuple[VerifiedStatement, str] | None
    ) -> None:
        self.path, self.sha256, self.data, self.verdict = path, sha256, data, verdict

    @classmethod
    def check(cls, src: TufSource, target: TargetFile, data: bytes) -> _Item:
        """Verify TUF-checked bytes with the caller's trust store (a failure is a warning)."""
        from ..bundle import verify_envelope
        from ..signing import Envelope

        where = f"{src.location}/{target.path}"
        verdict: tuple[VerifiedStatement, str] | None = None
        try:
            s = verify_envelope(Envelope.from_json(data, where=where), src._trust, where=where)
            r = s.release
            if target.path != ix.envelope_rel(r.model, r.version, r.serial):
                src.problems.append(f"{where}: skipped: holds {r.release_id}")
            else:
                verdict = (s, _valid_until(s, src._trust))
        except (VerificationError, UsageError) as exc:
            src.problems.append(f"{where}: skipped: {exc}")
        return cls(target.path, target.hashes["sha256"], data, verdict)

    def store(self, db: sqlite3.Connection, bin_name: str) -> None:
        db.execute("INSERT OR IGNORE INTO envelopes VALUES (?, ?)", (self.sha256, self.data))
        db.execute(
            "INSERT OR REPLACE INTO targets VALUES (?, ?, ?)", (self.path, bin_name, self.sha256)
        )
        if self.verdict is None:
            return
        s, valid_until = self.verdict
        r = s.release
        old = ix.stored_serial(db, r.model, r.version)
        if old is not None and old >= r.serial:
            return
        ix.index_statement(db, s, self.path, self.sha256)
        roles, summary = json.dumps(list(r.components)), json.dumps(s.to_dict())
        db.execute(
            "INSERT OR REPLACE INTO summaries VALUES (?, ?, ?, ?)",
            (self.path, valid_until, roles, summary),
        )
