"""A registry directory on disk: the envelopes, ``index.sqlite`` and ``releases.json``.

Writers (:meth:`LocalSource.add`) take a file lock, verify the envelope, refuse
serial rollback, write the envelope atomically and update the index in one
SQLite transaction, so concurrent ``registry add`` runs neither corrupt the
index nor lose a release. :meth:`LocalSource.rebuild` recreates the index from
the envelopes alone. Opening a directory reads nothing; the index is opened
(or rebuilt) on the first query.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import RollbackError, UnreadableInputError, UsageError, VerificationError
from ..fileio import atomic_write_bytes, atomic_writer, read_bounded
from ..locks import file_lock
from . import index as ix
from .fetch import MAX_DOWNLOAD_BYTES

if TYPE_CHECKING:
    from ..bundle import VerifiedStatement

__all__ = ["CORRUPT", "LocalSource", "read_envelope_file"]

CORRUPT = "index.sqlite is corrupt; run `sonic-registry registry rebuild-index`"

Verify = Callable[[bytes, str], "VerifiedStatement"]


def read_envelope_file(path: Path) -> bytes:
    """A signed envelope from disk, refused before reading when over the size cap."""
    return read_bounded(path, MAX_DOWNLOAD_BYTES, kind="signed release envelope")


class LocalSource:
    """Reads and writes one registry directory; ``verify`` checks with the caller's keys."""

    writable = True

    def __init__(self, root: Path, verify: Verify, problems: list[str]) -> None:
        if root.exists() and not root.is_dir():
            raise UnreadableInputError(str(root), "expected a registry directory")
        self.root = root
        self.location = str(root)
        self._verify = verify
        self.problems = problems
        self._conn: sqlite3.Connection | None = None

    # -- the index ---------------------------------------------------------------

    def _db(self, *, locked: bool = False) -> sqlite3.Connection:
        """The index; rebuilt from the envelopes when missing (``locked``: we hold the lock)."""
        if self._conn is None:
            if not (self.root / ix.INDEX_NAME).exists():
                if not locked and not (self.root / ix.RELEASES_DIR).is_dir():
                    raise UnreadableInputError(
                        self.location,
                        "not a registry (no releases/ folder); "
                        "create one with `sonic-registry registry add`",
                    )
                self._rebuild_unlocked() if locked else self.rebuild()
            try:
                self._conn = ix.connect(self.root / ix.INDEX_NAME)
            except sqlite3.DatabaseError:
                self._recover(locked=locked)
        assert self._conn is not None
        return self._conn

    def _recover(self, *, locked: bool = False) -> None:
        """The index is corrupt: rebuild it from the signed envelopes (it is only a hint)."""
        self.close()
        index = self.root / ix.INDEX_NAME
        try:
            self._rebuild_unlocked() if locked else self.rebuild()
            self._conn = ix.connect(index)
        except (sqlite3.DatabaseError, OSError) as exc:
            self.close()
            raise UnreadableInputError(str(index), CORRUPT) from exc

    def rows(self, sql: str, args: tuple[Any, ...] = (), *, locked: bool = False) -> list[Any]:
        """Run a query; an index found corrupt only now is rebuilt and asked once more."""
        try:
            return self._db(locked=locked).execute(sql, args).fetchall()
        except sqlite3.DatabaseError:
            pass
        self._recover(locked=locked)
        try:
            return self._db(locked=locked).execute(sql, args).fetchall()
        except sqlite3.DatabaseError as exc:
            raise UnreadableInputError(str(self.root / ix.INDEX_NAME), CORRUPT) from exc

    def read(self, rel: str) -> bytes:
        return read_envelope_file(self.root / rel)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- writing -------------------------------------------------------------------

    def add(self, data: bytes, where: str, statement: VerifiedStatement) -> tuple[Path, bool]:
        """Store a verified envelope; (its path, False when this manifest was already stored)."""
        r = statement.release
        rel = ix.envelope_rel(r.model, r.version, r.serial)
        self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / ix.LOCK_TARGET, timeout=120):
            self._remove_stray_temp_files()
            found = self.rows(
                "SELECT serial, manifest_digest FROM releases WHERE model = ? AND version = ?",
                (r.model, r.version),
                locked=True,
            )
            conn = self._db(locked=True)
            self._write_listing_if_stale(conn)  # an add killed after its index commit
            # Prevent rollback: a lower serial than the stored one is an older
            # manifest being replayed; the same serial with other content means
            # the maintainer re-signed without bumping it.
            if found:
                serial, digest = int(found[0][0]), str(found[0][1])
                if r.serial < serial:
                    raise RollbackError(
                        where,
                        f"serial: expected >= {serial} (stored for {r.model}@{r.version}), "
                        f"found {r.serial}: refusing a rollback to an older manifest",
                    )
                if r.serial == serial and digest == statement.manifest_digest:
                    return self.root / rel, False
                if r.serial == serial:
                    raise RollbackError(
                        where,
                        f"serial: {r.model}@{r.version}#{serial} is already stored with "
                        "another manifest; bump the serial and sign again",
                    )
            # The envelope file first (source of truth), then the index in one
            # transaction, then the listing for static-HTTP clients.
            target = self.root / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(target, data)
            with ix.transaction(conn):
                ix.index_statement(conn, statement, rel, hashlib.sha256(data).hexdigest())
            atomic_write_bytes(self.root / ix.LISTING_NAME, ix.listing_bytes(conn))
        return target, True

    def _write_listing_if_stale(self, conn: sqlite3.Connection) -> None:
        """Bring ``releases.json`` up to the index: an add killed (kill -9) between its
        index commit and its listing write left the listing one release behind."""
        want = ix.listing_bytes(conn)
        path = self.root / ix.LISTING_NAME
        try:
            have = path.read_bytes() if path.is_file() else None
        except OSError:
            have = None
        if have is not None and have != want:
            atomic_write_bytes(path, want)

    def _remove_stray_temp_files(self) -> None:
        """Delete the temporary files of writes killed before their rename (lock held).

        ``atomic_write_bytes`` names them ``.<name>.<random>.tmp`` beside the target;
        under the registry lock no writer of this registry is mid-write.
        """
        for pattern in (".*.tmp", f"{ix.RELEASES_DIR}/*/*/.*.tmp"):
            for stray in self.root.glob(pattern):
                stray.unlink(missing_ok=True)

    def envelope_files(self) -> list[Path]:
        base = self.root / ix.RELEASES_DIR
        if not base.is_dir():
            return []
        return sorted(p for p in base.glob("*/*/*.dsse.json") if p.is_file())

    def rebuild(self) -> int:
        """Recreate ``index.sqlite`` and ``releases.json`` from the envelopes alone."""
        self.root.mkdir(parents=True, exist_ok=True)
        with file_lock(self.root / ix.LOCK_TARGET, timeout=120):
            return self._rebuild_unlocked()

    def _newest_verified(self) -> dict[tuple[str, str], tuple[VerifiedStatement, str, str]]:
        """The newest serial per model@version among the envelopes that verify."""
        newest: dict[tuple[str, str], tuple[VerifiedStatement, str, str]] = {}
        for path in self.envelope_files():
            rel = path.relative_to(self.root).as_posix()
            try:
                data = read_envelope_file(path)
                statement = self._verify(data, str(path))
            except (VerificationError, UsageError, OSError) as exc:
                self.problems.append(f"{path}: skipped: {exc}")
                continue
            r = statement.release
            if rel != ix.envelope_rel(r.model, r.version, r.serial):
                self.problems.append(
                    f"{path}: skipped: holds {r.release_id}, expected at "
                    f"{ix.envelope_rel(r.model, r.version, r.serial)}"
                )
                continue
            key = (r.model, r.version)
            if key not in newest or newest[key][0].release.serial < r.serial:
                newest[key] = (statement, rel, hashlib.sha256(data).hexdigest())
        return newest

    def _rebuild_unlocked(self) -> int:
        newest = self._newest_verified()
        # SQLite writes the temp file itself; atomic_writer fsyncs it, renames it
        # over the index and fsyncs the directory (or removes it on failure).
        with atomic_writer(self.root / ix.INDEX_NAME) as fh:
            conn = ix.connect(fh.name)
            try:
                with ix.transaction(conn):
                    for statement, rel, sha in newest.values():
                        ix.index_statement(conn, statement, rel, sha)
                atomic_write_bytes(self.root / ix.LISTING_NAME, ix.listing_bytes(conn))
            finally:
                conn.close()
            self.close()
        return len(newest)
