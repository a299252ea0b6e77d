"""A registry of signed releases: plain files that any static server can publish.

Layout of a registry directory::

    releases/<model>/<version>/<serial>.dsse.json   the signed envelopes (source of truth)
    releases.json                                    listing of the newest envelope per
                                                     model@version (for HTTP clients)
    index.sqlite                                     sha256 -> (model, version, role, path)
    .registry.lock                                   serialises writers

Nothing but the envelopes is trusted. ``index.sqlite`` and ``releases.json``
are hints that make lookups fast and let a client find the envelopes on a
server that cannot list directories; every answer is re-checked against an
envelope verified with the *caller's* trust store, so a server (or a local
attacker) who edits the index can at worst hide a release, which makes its
files "unknown" and therefore refused, never accepted.

Writers (:meth:`Registry.add`) take a file lock, verify the envelope, refuse
serial rollback, write the envelope atomically and update the index in one
SQLite transaction, so concurrent ``registry add`` runs neither corrupt the
index nor lose a release. :meth:`Registry.rebuild_index` recreates the index
from the envelopes alone.

Remote registries (``file://`` and ``http(s)://`` URLs) are read-only: the
client downloads ``releases.json`` and each envelope it lists (bounded sizes),
verifies every envelope itself and builds its own in-memory index.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from .canonical import canonical_bytes, loads_strict
from .errors import (
    InvalidManifest,
    RollbackError,
    SonicRegistryError,
    UnreadableInputError,
    UsageError,
    VerificationError,
)
from .fileio import atomic_write_bytes, read_bounded

if TYPE_CHECKING:
    from .bundle import VerifiedStatement
    from .trust import TrustStore

__all__ = [
    "INDEX_NAME",
    "LISTING_NAME",
    "RELEASES_DIR",
    "AddResult",
    "Match",
    "Registry",
    "open_registry",
]

RELEASES_DIR = "releases"
INDEX_NAME = "index.sqlite"
LISTING_NAME = "releases.json"
LOCK_NAME = ".registry.lock"
MEMORY = ":memory:"
#: Largest envelope / listing a client downloads.
MAX_DOWNLOAD_BYTES = 16 * 1024 * 1024
FETCH_TIMEOUT_S = 30.0

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
"""
#: Every column the queries use: an index.sqlite without one of them is corrupt.
_PROBES = (
    "SELECT model, version, serial, channel, manifest_digest, envelope, envelope_sha256 "
    "FROM releases LIMIT 0",
    "SELECT sha256, size, model, version, role, path FROM files LIMIT 0",
)
_CORRUPT = "index.sqlite is corrupt; run `sonic-registry registry rebuild-index`"


@dataclass(frozen=True, slots=True)
class Match:
    """One verified release that lists a file with this digest."""

    statement: VerifiedStatement
    path: str  # the file's name inside the release bundle
    role: str | None  # None for a listed file that is no component (release.toml, configs)

    @property
    def model(self) -> str:
        return self.statement.release.model

    @property
    def version(self) -> str:
        return self.statement.release.version

    @property
    def channel(self) -> str:
        return self.statement.channel

    @property
    def training_step(self) -> int | None:
        if self.role is None:
            return None
        return self.statement.release.components[self.role].training_step

    @property
    def interface(self) -> str:
        return "" if self.role is None else self.statement.release.components[self.role].interface

    def describe(self) -> str:
        """``sonic 1.3.0 step 80000`` (the words a mixed-release error uses)."""
        step = self.training_step
        return f"{self.model} {self.version}" + (f" step {step}" if step is not None else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "serial": self.statement.release.serial,
            "release_id": self.statement.release.release_id,
            "role": self.role,
            "path": self.path,
            "channel": self.channel,
            "official": self.channel == "official",
            "training_step": self.training_step,
            "manifest_digest": self.statement.manifest_digest,
        }


@dataclass(frozen=True, slots=True)
class AddResult:
    statement: VerifiedStatement
    path: Path
    added: bool  # False when the same manifest was already stored


def _envelope_rel(model: str, version: str, serial: int) -> str:
    return f"{RELEASES_DIR}/{model}/{version}/{serial}.dsse.json"


def _read_file(path: Path) -> bytes:
    return read_bounded(path, MAX_DOWNLOAD_BYTES, kind="signed release envelope")


def _connect(path: Path | str) -> sqlite3.Connection:
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


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _index_statement(
    conn: sqlite3.Connection, statement: VerifiedStatement, envelope_rel: str, envelope_sha: str
) -> None:
    """Replace the index rows of ``statement``'s model@version with its own."""
    r = statement.release
    conn.execute("DELETE FROM files WHERE model = ? AND version = ?", (r.model, r.version))
    conn.execute(
        "INSERT OR REPLACE INTO releases VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            r.model,
            r.version,
            r.serial,
            statement.channel,
            statement.manifest_digest,
            envelope_rel,
            envelope_sha,
        ),
    )
    conn.executemany(
        "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                s.sha256,
                s.size,
                r.model,
                r.version,
                (c.role if (c := r.component_for_path(name)) else None),
                name,
            )
            for name, s in statement.subjects.items()
        ],
    )


class Registry:
    """A registry read (and, when local, written) with the caller's trust store."""

    def __init__(self, location: str | Path, trust: TrustStore) -> None:
        self.trust = trust
        self.location = str(location)
        self.root: Path | None = None
        self._remote_base: str | None = None
        self._envelopes: dict[str, bytes] = {}  # remote: envelope rel path -> bytes
        self._verified: dict[str, VerifiedStatement] = {}
        self.problems: list[str] = []  # envelopes skipped while reading, one line each
        self._conn: sqlite3.Connection | None = None
        scheme = urllib.parse.urlsplit(self.location).scheme
        if self.location == MEMORY:
            self._conn = sqlite3.connect(":memory:", isolation_level=None)
            self._conn.executescript(_SCHEMA)
        elif scheme in ("http", "https", "file"):
            self._remote_base = self.location.rstrip("/") + "/"
            self._conn = sqlite3.connect(":memory:", isolation_level=None)
            self._conn.executescript(_SCHEMA)
            self._load_remote()
        elif len(scheme) > 1:
            raise UsageError(
                self.location,
                f"unsupported registry URL scheme {scheme!r} "
                "(expected a directory, file://, http:// or https://)",
            )
        else:
            self.root = Path(location)
            if self.root.exists() and not self.root.is_dir():
                raise UnreadableInputError(self.location, "expected a registry directory")

    # -- local files -----------------------------------------------------------

    def _local_root(self) -> Path:
        if self.root is None:
            raise UsageError(self.location, "a remote or in-memory registry is read-only")
        return self.root

    def _db(self, *, locked: bool = False) -> sqlite3.Connection:
        """The index; rebuilt from the envelopes when missing (``locked``: we hold the lock)."""
        if self._conn is None:
            root = self._local_root()
            if not (root / INDEX_NAME).exists():
                if not locked and not (root / RELEASES_DIR).is_dir():
                    raise UnreadableInputError(
                        self.location,
                        "not a registry (no releases/ folder); "
                        "create one with `sonic-registry registry add`",
                    )
                if locked:
                    self._rebuild_unlocked()
                else:
                    self.rebuild_index()
            try:
                self._conn = _connect(root / INDEX_NAME)
            except sqlite3.DatabaseError:
                self._recover(locked=locked)
        assert self._conn is not None
        return self._conn

    def _recover(self, *, locked: bool = False) -> None:
        """The index is corrupt: rebuild it from the signed envelopes (it is only a hint)."""
        self.close()
        index = self._local_root() / INDEX_NAME
        try:
            if locked:
                self._rebuild_unlocked()
            else:
                self.rebuild_index()
            self._conn = _connect(index)
        except (sqlite3.DatabaseError, OSError) as exc:
            self.close()
            raise UnreadableInputError(str(index), _CORRUPT) from exc

    def _rows(self, sql: str, args: tuple[Any, ...] = (), *, locked: bool = False) -> list[Any]:
        """Run a query; an index found corrupt only now is rebuilt and asked once more."""
        try:
            return self._db(locked=locked).execute(sql, args).fetchall()
        except sqlite3.DatabaseError:
            if self.root is None:
                raise
        self._recover(locked=locked)
        try:
            return self._db(locked=locked).execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise UnreadableInputError(str(self._local_root() / INDEX_NAME), _CORRUPT) from exc

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def from_envelopes(
        cls,
        envelopes: Iterable[str | Path | bytes],
        trust: TrustStore,
        *,
        skip_invalid: bool = False,
    ) -> Registry:
        """A read-only, in-memory registry of these signed releases.

        For callers that hold the envelopes themselves, such as a model
        repository's own ``release.dsse.json`` in the pre-commit hook. Each
        envelope is verified with ``trust``; one that does not verify raises,
        or with ``skip_invalid`` is left out and named in :attr:`problems`.
        """
        reg = cls(MEMORY, trust)
        for item in envelopes:
            where = "release.dsse.json" if isinstance(item, bytes) else str(item)
            try:
                data = item if isinstance(item, bytes) else _read_file(Path(item))
                statement = reg._verify(data, where)
            except SonicRegistryError as exc:
                if not skip_invalid:
                    raise
                reg.problems.append(f"{where}: skipped: {exc}")
                continue
            r = statement.release
            reg._remember(_envelope_rel(r.model, r.version, r.serial), data, statement)
        return reg

    def _remember(self, rel: str, data: bytes, statement: VerifiedStatement) -> None:
        """Index a verified envelope in memory, keeping the newest serial per model@version."""
        assert self._conn is not None
        r = statement.release
        old = self._conn.execute(
            "SELECT serial FROM releases WHERE model = ? AND version = ?",
            (r.model, r.version),
        ).fetchone()
        if old is not None and int(old[0]) >= r.serial:
            return
        self._envelopes[rel] = data
        self._verified[rel] = statement
        with _transaction(self._conn):
            _index_statement(self._conn, statement, rel, hashlib.sha256(data).hexdigest())

    def _read_envelope_bytes(self, rel: str) -> bytes:
        if self.root is None:
            return self._envelopes[rel]
        return _read_file(self._local_root() / rel)

    def _verify(self, data: bytes, where: str) -> VerifiedStatement:
        from .bundle import verify_envelope
        from .signing import Envelope

        return verify_envelope(Envelope.from_json(data, where=where), self.trust, where=where)

    def _statement(self, rel: str) -> VerifiedStatement:
        cached = self._verified.get(rel)
        if cached is None:
            cached = self._verify(self._read_envelope_bytes(rel), f"{self.location}/{rel}")
            self._verified[rel] = cached
        return cached

    # -- writing ---------------------------------------------------------------

    def add(self, envelope: str | Path | bytes, *, record_serial: bool = True) -> AddResult:
        """Verify a signed release and store it; refuse a serial rollback.

        Idempotent: adding the same manifest twice stores it once.
        """
        from filelock import FileLock

        root = self._local_root()
        if isinstance(envelope, bytes):
            data, where = envelope, "release.dsse.json"
        else:
            path = Path(envelope)
            if path.is_dir():  # a signed bundle: take its envelope
                path = path / "release.dsse.json"
            where = str(path)
            data = _read_file(path)
        # Step 1: verify before anything is written (signatures, threshold, expiry,
        # and the trust store's own rollback record).
        statement = self._verify(data, where)
        r = statement.release
        rel = _envelope_rel(r.model, r.version, r.serial)
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / LOCK_NAME), timeout=120):
            found = self._rows(
                "SELECT serial, manifest_digest FROM releases WHERE model = ? AND version = ?",
                (r.model, r.version),
                locked=True,
            )
            conn = self._db(locked=True)
            row = found[0] if found else None
            # Step 2: prevent rollback: a lower serial than the stored one is an
            # older manifest being replayed; the same serial with other content
            # means the maintainer re-signed without bumping it.
            if row is not None:
                serial, digest = int(row[0]), str(row[1])
                if r.serial < serial:
                    raise RollbackError(
                        where,
                        f"serial: expected >= {serial} (stored for {r.model}@{r.version}), "
                        f"found {r.serial}: refusing a rollback to an older manifest",
                    )
                if r.serial == serial and digest == statement.manifest_digest:
                    return AddResult(statement, root / rel, added=False)
                if r.serial == serial:
                    raise RollbackError(
                        where,
                        f"serial: {r.model}@{r.version}#{serial} is already stored with "
                        "another manifest; bump the serial and sign again",
                    )
            # Step 3: the envelope file first (source of truth), then the index
            # in one transaction, then the listing for static-HTTP clients.
            target = root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, data)
            with _transaction(conn):
                _index_statement(conn, statement, rel, hashlib.sha256(data).hexdigest())
            self._write_listing(conn)
        if record_serial:
            from .trust import record_verified_serial

            record_verified_serial(self.trust, statement, where=where)
        return AddResult(statement, target, added=True)

    def _write_listing(self, conn: sqlite3.Connection) -> None:
        rows = conn.execute(
            "SELECT envelope, envelope_sha256 FROM releases ORDER BY model, version"
        ).fetchall()
        listing = {
            "version": 1,
            "releases": [{"path": str(p), "sha256": str(s)} for p, s in rows],
        }
        atomic_write_bytes(self._local_root() / LISTING_NAME, canonical_bytes(listing) + b"\n")

    def _envelope_files(self) -> list[Path]:
        base = self._local_root() / RELEASES_DIR
        if not base.is_dir():
            return []
        return sorted(p for p in base.glob("*/*/*.dsse.json") if p.is_file())

    def rebuild_index(self) -> int:
        """Recreate ``index.sqlite`` and ``releases.json`` from the envelopes alone.

        Envelopes that no longer verify with this trust store are left out and
        named in :attr:`problems`. Returns the number of releases indexed.
        """
        from filelock import FileLock

        root = self._local_root()
        root.mkdir(parents=True, exist_ok=True)
        with FileLock(str(root / LOCK_NAME), timeout=120):
            return self._rebuild_unlocked()

    def _rebuild_unlocked(self) -> int:
        root = self._local_root()
        newest: dict[tuple[str, str], tuple[VerifiedStatement, str, str]] = {}
        for path in self._envelope_files():
            rel = path.relative_to(root).as_posix()
            try:
                data = _read_file(path)
                statement = self._verify(data, str(path))
            except (VerificationError, UsageError, OSError) as exc:
                self.problems.append(f"{path}: skipped: {exc}")
                continue
            r = statement.release
            if rel != _envelope_rel(r.model, r.version, r.serial):
                self.problems.append(
                    f"{path}: skipped: holds {r.release_id}, expected at "
                    f"{_envelope_rel(r.model, r.version, r.serial)}"
                )
                continue
            key = (r.model, r.version)
            if key not in newest or newest[key][0].release.serial < r.serial:
                newest[key] = (statement, rel, hashlib.sha256(data).hexdigest())
        tmp = root / f".{INDEX_NAME}.{os.getpid()}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        conn = _connect(tmp)
        try:
            with _transaction(conn):
                for statement, rel, sha in newest.values():
                    _index_statement(conn, statement, rel, sha)
            self._write_listing(conn)
        finally:
            conn.close()
        self.close()
        os.replace(tmp, root / INDEX_NAME)
        return len(newest)

    # -- remote reading --------------------------------------------------------

    def _fetch(self, rel: str) -> bytes:
        assert self._remote_base is not None
        url = urllib.parse.urljoin(self._remote_base, urllib.parse.quote(rel))
        try:
            with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT_S) as response:
                data: bytes = response.read(MAX_DOWNLOAD_BYTES + 1)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise UnreadableInputError(url, f"cannot download: {reason}") from exc
        if len(data) > MAX_DOWNLOAD_BYTES:
            raise UnreadableInputError(url, f"larger than {MAX_DOWNLOAD_BYTES} bytes")
        return data

    def _load_remote(self) -> None:
        listing = loads_strict(self._fetch(LISTING_NAME), where=f"{self.location}/{LISTING_NAME}")
        entries = listing.get("releases") if isinstance(listing, dict) else None
        if not isinstance(entries, list):
            raise InvalidManifest(
                "releases",
                "expected a list of {path, sha256}",
                path=f"{self.location}/{LISTING_NAME}",
            )
        for i, entry in enumerate(entries):
            rel = entry.get("path") if isinstance(entry, dict) else None
            if not isinstance(rel, str) or not rel.startswith(f"{RELEASES_DIR}/") or ".." in rel:
                raise InvalidManifest(
                    f"releases.{i}.path",
                    f"expected releases/..., found {rel!r}",
                    path=f"{self.location}/{LISTING_NAME}",
                )
            data = self._fetch(rel)
            # The listing is unsigned; its digest only catches a mangled download.
            # Trust comes from verifying the envelope with our own keys below.
            if entry.get("sha256") not in (None, hashlib.sha256(data).hexdigest()):
                self.problems.append(
                    f"{self.location}/{rel}: skipped: digest differs from {LISTING_NAME}"
                )
                continue
            try:
                statement = self._verify(data, f"{self.location}/{rel}")
            except (VerificationError, UsageError) as exc:
                self.problems.append(f"{self.location}/{rel}: skipped: {exc}")
                continue
            r = statement.release
            if rel != _envelope_rel(r.model, r.version, r.serial):
                self.problems.append(f"{self.location}/{rel}: skipped: holds {r.release_id}")
                continue
            self._remember(rel, data, statement)

    # -- queries -----------------------------------------------------------------

    def lookup(self, sha256: str) -> tuple[Match, ...]:
        """Every verified release listing a file with this sha256 (newest first).

        The index only says where to look; the answer comes from the verified
        envelope, so an index row the envelope does not back is ignored.
        """
        rows = self._rows(
            "SELECT f.path, f.role, r.envelope FROM files f JOIN releases r "
            "ON f.model = r.model AND f.version = r.version WHERE f.sha256 = ?",
            (sha256,),
        )
        matches: list[Match] = []
        for path, _role, rel in rows:
            try:
                statement = self._statement(str(rel))
            except (VerificationError, UsageError) as exc:
                line = f"{rel}: skipped: {exc}"
                if line not in self.problems:
                    self.problems.append(line)
                continue
            subject = statement.subjects.get(str(path))
            if subject is None or subject.sha256 != sha256:
                continue
            component = statement.release.component_for_path(str(path))
            matches.append(Match(statement, str(path), component.role if component else None))
        matches.sort(key=lambda m: (Version(m.version), m.statement.release.serial), reverse=True)
        return tuple(matches)

    def get(self, model: str, version: str) -> VerifiedStatement:
        """The newest verified serial of ``model@version``."""
        found = self._rows(
            "SELECT envelope FROM releases WHERE model = ? AND version = ?", (model, version)
        )
        row = found[0] if found else None
        if row is None:
            raise UnreadableInputError(
                self.location, f"no release {model}@{version} in the registry"
            )
        return self._statement(str(row[0]))

    def releases(self) -> list[VerifiedStatement]:
        """Every release (newest serial per model@version) that verifies, sorted."""
        rows = self._rows("SELECT envelope FROM releases")
        out: list[VerifiedStatement] = []
        for (rel,) in rows:
            try:
                out.append(self._statement(str(rel)))
            except (VerificationError, UsageError) as exc:
                self.problems.append(f"{rel}: skipped: {exc}")
        out.sort(key=lambda s: (s.release.model, Version(s.release.version)))
        return out


def open_registry(location: str | Path, trust: TrustStore) -> Registry:
    """A registry directory, or a ``file://`` / ``http(s)://`` URL of a published one."""
    return Registry(location, trust)
