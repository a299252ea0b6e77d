"""One refresh of a TUF registry's cache: which bins changed, what to fetch, what verifies.

:class:`BinSync` diffs the bins ngclient trusts against the cache, downloads
the new envelopes (a bin's pack when several are missing) through
:class:`Prefetch`, checks each against its signed TUF targets entry, verifies
it with the caller's trust store, and stores each bin in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ..canonical import canonical_sha256
from ..errors import StaleRegistryError, UnreadableInputError, UsageError, VerificationError
from . import index as ix
from .fetch import MAX_DOWNLOAD_BYTES, Fetcher, HttpFetcher
from .tuf_repo import METADATA_DIR, PACKS_DIR

if TYPE_CHECKING:
    from tuf.api.metadata import TargetFile, Targets
    from tuf.ngclient import Updater

    from ..bundle import VerifiedStatement
    from ..trust import TrustStore
    from .tuf_client import TufSource

__all__ = ["PACK_FROM", "BinSync", "Prefetch", "fingerprint", "utc_text", "valid_until"]

#: Fetch a bin's pack instead of its envelopes one by one from this many missing.
PACK_FROM = 2
_WORKERS = 16
#: Bins downloaded and verified ahead of the one being stored...
WINDOW = 4
#: ...while they hold fewer new envelopes than this between them. A bin holds
#: 1/2**bits of all releases, so a count of bins alone would let memory grow
#: with the registry; this keeps it near one bin's worth beyond the cap.
MAX_IN_FLIGHT = 512
#: Bins whose signed metadata is downloaded ahead of the one being diffed.
BINS_AHEAD = 8


class Prefetch:
    """Downloads started early and in parallel; each URL is handed out once, then forgotten.

    ngclient fetches one file at a time. Starting the requests it is about to
    make (the next root and the timestamp while python-tuf is still being
    imported, every changed bin at once, each pack as soon as its bin is
    known) hides the round trips; ngclient still verifies every byte.
    """

    def __init__(self, inner: Fetcher) -> None:
        if isinstance(inner, HttpFetcher):
            inner.prepare()  # before any worker thread starts (see HttpFetcher.prepare)
        self._inner = inner
        self._pool = ThreadPoolExecutor(_WORKERS)
        self._futures: dict[str, Future[bytes]] = {}

    def start(self, url: str) -> None:
        if url not in self._futures:
            self._futures[url] = self._pool.submit(self._inner.fetch, url, MAX_DOWNLOAD_BYTES)

    def fetch(self, url: str, limit: int) -> bytes:
        future = self._futures.pop(url, None)
        if future is None:
            return self._inner.fetch(url, limit)
        data = future.result()
        if len(data) > limit:
            raise UnreadableInputError(
                url, f"cannot download: larger than {limit} bytes (size cap)"
            )
        return data

    def peek(self, url: str) -> bytes | Exception | None:
        """A started download's bytes or error, still handed out later (None: not started)."""
        future = self._futures.get(url)
        if future is None:
            return None
        try:
            return future.result()
        except Exception as exc:  # the fetcher's error, for the caller to judge
            return exc

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def valid_until(statement: VerifiedStatement, trust: TrustStore) -> str:
    """When this verdict lapses: the release's expiry or a signing key's, whichever is first."""
    from ..manifest import parse_time

    ends = [parse_time(statement.release.expires)]
    for sig in statement.envelope.signatures:
        key = trust.keys.get(sig.keyid)
        if key is not None and key.expires:
            ends.append(parse_time(key.expires))
    return utc_text(min(ends))


def fingerprint(trust: TrustStore) -> str:
    return canonical_sha256(trust.to_dict())


#: A bin being downloaded and verified: name, version, dropped paths, new envelopes, job.
_Pending = tuple[str, int, list[str], int, "Future[list[_Item]]"]


class BinSync:
    """One refresh: diff the trusted bins against the cache, fetch and verify what is new.

    The main thread walks the changed bins with the updater (network waits)
    and owns the SQLite cache; a small pool verifies each bin's new envelopes
    meanwhile, and a larger one downloads them. Each bin is stored in one
    transaction once all of its new envelopes passed TUF's hash check, so an
    interrupted refresh leaves a cache that is old but never unverified.
    """

    def __init__(
        self, source: TufSource, updater: Updater, bins: dict[str, int], prefetch: Prefetch
    ) -> None:
        self.src = source
        self.updater = updater
        self.bins = bins
        self.prefetch = prefetch
        self.db = source._db()
        self.fp = fingerprint(source._trust)

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
        local = self.src.cache / METADATA_DIR
        # After a trust store change (cached is empty) the bins are most likely
        # in ngclient's cache already: fetch only those that are not.
        remote = {n for n in stale if n in cached or not (local / f"{n}.json").exists()}
        with ThreadPoolExecutor(2) as verify_pool, ThreadPoolExecutor(_WORKERS) as net:
            pending: list[_Pending] = []
            for i, name in enumerate(stale):
                # A bounded window of bins in flight (bin metadata a few bins
                # ahead, a bin's pack once it is its turn): memory stays flat in
                # the number of releases, and the round trips still overlap.
                for ahead in stale[i : i + BINS_AHEAD]:
                    if ahead in remote:
                        self.prefetch.start(self._bin_url(ahead))
                self._drain(pending, wait=False)
                while pending and (
                    len(pending) >= WINDOW or sum(p[3] for p in pending) >= MAX_IN_FLIGHT
                ):
                    self._drain(pending, wait=True)
                new, removed, have, pack = self._diff(name)
                job = verify_pool.submit(self._bin_items, new, have, pack, net)
                pending.append((name, self.bins[name], removed, len(new), job))
            while pending:
                self._drain(pending, wait=True)
        for name in set(cached) - set(self.bins):
            self._store(name, None, self._known(name), [])

    def _drain(self, pending: list[_Pending], *, wait: bool) -> None:
        """Store finished bins in order (``wait``: block for the oldest one first)."""
        while pending and (wait or pending[0][4].done()):
            name, version, removed, _count, job = pending.pop(0)
            self._store(name, version, removed, job.result())
            wait = False

    def _bin_url(self, name: str) -> str:
        return f"{self.src.base}{METADATA_DIR}/{self.bins[name]}.{name}.json"

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
            elif "sha256" not in target.hashes:
                self.src.problems.append(f"{path}: skipped: its targets entry has no sha256")
            elif path.startswith(f"{PACKS_DIR}/"):
                pack = target
            elif (
                path.startswith(f"{ix.RELEASES_DIR}/")
                and known.get(path) != target.hashes["sha256"]
            ):
                new.append(target)
        changed = {t.path for t in new}
        removed = [p for p in known if p not in targets.targets or p in changed]
        have: dict[str, bytes] = {}
        for target in new:
            sha = target.hashes["sha256"]
            row = self.db.execute("SELECT data FROM envelopes WHERE sha256 = ?", (sha,)).fetchone()
            if row is not None:
                have[sha] = bytes(row[0])
        if pack is not None and len(new) - len(have) >= PACK_FROM:
            self.prefetch.start(self.src.target_url(pack, hashed=True))
        # ngclient keeps every delegated role it loaded for the updater's
        # lifetime (one entry per release in all): drop this bin now that its
        # entries are diffed, so memory stays flat in the number of releases.
        # Nothing else reads it in this refresh; each bin is loaded once.
        self.updater._trusted_set._trusted_set.pop(name, None)
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
            fetched = net.map(lambda t: self.src.fetch_target(self.prefetch, t), missing)
            for target, data in zip(missing, fetched, strict=True):
                have[target.hashes["sha256"]] = data
        return [_Item.check(self.src, t, have[t.hashes["sha256"]]) for t in new]

    def _from_pack(self, pack: TargetFile, missing: list[TargetFile]) -> dict[str, bytes]:
        """Envelopes out of the bin's pack; each is checked against its own targets entry."""
        from tuf.api import exceptions as tx

        data = self.src.fetch_target(self.prefetch, pack, hashed=True)
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


#: One release's ``summaries`` row (see tuf_client's cache schema).
_Summary = tuple[str, str, str, str, int, str, str, str, str, str]


class _Item:
    """One envelope of a bin: TUF-verified bytes, and the rows the trust store's verdict gives.

    Only the rows are kept, not the verified statement: a refresh holds a few
    hundred items between verifying and storing them.
    """

    def __init__(
        self, path: str, sha256: str, data: bytes, rows: tuple[ix.IndexRows, _Summary] | None
    ) -> None:
        self.path, self.sha256, self.data, self.rows = path, sha256, data, rows

    @classmethod
    def check(cls, src: TufSource, target: TargetFile, data: bytes) -> _Item:
        """Verify TUF-checked bytes with the caller's trust store (a failure is a warning)."""
        from ..bundle import verify_envelope
        from ..signing import Envelope

        where = f"{src.location}/{target.path}"
        sha = target.hashes["sha256"]
        try:
            s = verify_envelope(Envelope.from_json(data, where=where), src._trust, where=where)
        except (VerificationError, UsageError) as exc:
            src.problems.append(f"{where}: skipped: {exc}")
            return cls(target.path, sha, data, None)
        r = s.release
        if target.path != ix.envelope_rel(r.model, r.version, r.serial):
            src.problems.append(f"{where}: skipped: holds {r.release_id}")
            return cls(target.path, sha, data, None)
        summary: _Summary = (
            target.path,
            valid_until(s, src._trust),
            r.model,
            r.version,
            r.serial,
            s.channel,
            r.expires,
            "\t".join(r.components),
            json.dumps(s.to_dict()),
            ix.version_sort_key(r.version),
        )
        return cls(target.path, sha, data, (ix.IndexRows.of(s, target.path, sha), summary))

    def store(self, db: sqlite3.Connection, bin_name: str) -> None:
        db.execute("INSERT OR IGNORE INTO envelopes VALUES (?, ?)", (self.sha256, self.data))
        db.execute(
            "INSERT OR REPLACE INTO targets VALUES (?, ?, ?)", (self.path, bin_name, self.sha256)
        )
        if self.rows is None:
            return
        rows, summary = self.rows
        old = ix.stored_serial(db, rows.model, rows.version)
        if old is not None and old >= rows.serial:
            return
        ix.index_rows(db, rows)
        db.execute(
            "INSERT OR REPLACE INTO summaries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", summary
        )
