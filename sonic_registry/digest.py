"""Parallel streaming digests: whole-file SHA-256, shard digests, a stat cache.

The byte-range hashing itself (and why files are hashed in shards) is in
:mod:`.hashing`. The whole-file digest is still signed, because that is what
Git LFS pointers, model hubs and ``identify`` compare against.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from .constants import RACY_SECONDS
from .errors import UnreadableInputError
from .hashing import SHARD_SIZE, Progress, ShardPlan, hash_range, open_file
from .workpool import default_threads, pool_map

__all__ = [
    "DigestSource",
    "FileDigest",
    "KnownDigests",
    "ShardedDigest",
    "StatCache",
    "blake3_available",
    "blake3_file",
    "hash_file",
    "hash_files",
    "hash_with_cache",
    "sharded_digests",
]


@dataclass(frozen=True, slots=True)
class FileDigest:
    """The whole-file SHA-256 and size of one file."""

    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class ShardedDigest:
    """Whole-file digest plus the digest of every ``shard_size`` slice (may be empty)."""

    sha256: str
    size: int
    shard_size: int
    shards: tuple[str, ...]

    @property
    def file(self) -> FileDigest:
        return FileDigest(self.sha256, self.size)


def blake3_available() -> bool:
    """True when the optional ``blake3`` package (extra ``blake3``) is importable."""
    try:
        import blake3  # noqa: F401
    except ImportError:
        return False
    return True


#: BLAKE3 reads bigger chunks: its own threads split each chunk across cores.
BLAKE3_CHUNK = 16 << 20


def blake3_file(
    path: str | Path, *, threads: int | None = None, progress: Progress | None = None
) -> tuple[str, int]:
    """BLAKE3 of a whole file, multi-threaded inside the hasher; (hex, bytes read).

    Unlike SHA-256, BLAKE3 is a tree hash, so one large file is hashed on every
    core without shard bookkeeping. Reads go through one fixed buffer.
    """
    import blake3

    p = Path(path)
    workers = threads or default_threads()
    hasher = blake3.blake3(max_threads=workers if workers > 1 else 1)
    fd = open_file(p)
    try:
        buf = bytearray(BLAKE3_CHUNK)
        view = memoryview(buf)
        total = 0
        while True:
            n = os.readv(fd, [view])
            if n == 0:
                break
            hasher.update(view[:n])
            total += n
            if progress is not None:
                progress(n)
    except OSError as exc:
        raise UnreadableInputError(str(p), f"cannot read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    return hasher.hexdigest(), total


def hash_file(path: str | Path, *, progress: Progress | None = None) -> FileDigest:
    """Streaming whole-file SHA-256 (one thread)."""
    p = Path(path)
    digest, size = hash_range(p, progress=progress)
    return FileDigest(digest, size)


def hash_files(
    paths: Iterable[str | Path],
    *,
    threads: int | None = None,
    progress: Progress | None = None,
) -> list[FileDigest]:
    """Whole-file SHA-256 of many files on a thread pool; results in input order."""
    items = [Path(p) for p in paths]
    # Largest first so one big file does not start last and finish alone.
    order = sorted(range(len(items)), key=lambda i: -_size_or_zero(items[i]))
    results = pool_map(lambda i: (i, hash_file(items[i], progress=progress)), order, threads)
    out: list[FileDigest | None] = [None] * len(items)
    for i, d in results:
        out[i] = d
    return [d for d in out if d is not None]


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def sharded_digests(
    paths: Sequence[str | Path],
    *,
    shard_size: int | Sequence[int] = SHARD_SIZE,
    whole: bool = True,
    threads: int | None = None,
    progress: Progress | None = None,
) -> list[ShardedDigest]:
    """Shard digests of every file (and the whole-file digest when ``whole``), in parallel.

    Verification passes ``whole=False`` for files that have signed shards.
    """
    plan = ShardPlan(paths, shard_size=shard_size, whole=whole)
    return plan.digests(pool_map(partial(plan.hash_task, progress=progress), plan.tasks, threads))


class DigestSource(Protocol):
    """Where a caller may already know a file's digest without reading it.

    :class:`StatCache` is one (files unchanged since hashed); :class:`KnownDigests`
    another (signed digests of files the verified loader will hash on load).
    """

    def get(self, file_path: str | Path) -> FileDigest | None: ...

    def put(self, file_path: str | Path, digest: FileDigest) -> None: ...


class KnownDigests:
    """Read-only digests the caller vouches for, keyed by real path.

    For a runtime that resolves its graph before loading: the signed digest of
    each weight stands in for reading it now, because the loader hashes the very
    bytes it loads and refuses any that differ.
    """

    def __init__(self, digests: Mapping[str | Path, FileDigest]) -> None:
        self._digests = {os.path.realpath(p): d for p, d in digests.items()}

    def get(self, file_path: str | Path) -> FileDigest | None:
        return self._digests.get(os.path.realpath(file_path))

    def put(self, file_path: str | Path, digest: FileDigest) -> None:
        """Known digests are fixed; what a caller hashed is not added."""


class StatCache:
    """(path, size, mtime_ns, ctime_ns, inode) -> digest, so unchanged files are not re-hashed.

    Only for fast paths where a stale answer is harmless to trust, such as the
    pre-commit hook and ``identify``; ``verify`` never consults it. ``ctime``
    is part of the key because no user can set it: rewriting a file with the
    same size and a restored mtime still changes ctime. Entries whose times are
    within ``RACY_SECONDS`` of the moment they are stored are not kept (Git's
    "racily clean" problem: a write in the same clock tick would look unchanged).
    """

    RACY_SECONDS = RACY_SECONDS
    VERSION = 1

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._dirty = False
        self._entries: dict[str, list[Any]] = {}
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(self.path.read_text("utf-8"))
            if isinstance(data, dict) and data.get("version") == self.VERSION:
                entries = data.get("entries", {})
                if isinstance(entries, dict):
                    self._entries = entries

    @staticmethod
    def _key(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]

    def get(self, file_path: str | Path) -> FileDigest | None:
        p = os.path.abspath(file_path)
        try:
            st = os.stat(p)
        except OSError:
            return None
        entry = self._entries.get(p)
        if not entry or not stat_mod.S_ISREG(st.st_mode) or entry[:5] != self._key(st):
            return None
        digest = entry[5]
        return FileDigest(digest, st.st_size) if isinstance(digest, str) else None

    def put(self, file_path: str | Path, digest: FileDigest) -> None:
        p = os.path.abspath(file_path)
        try:
            st = os.stat(p)
        except OSError:
            return
        newest = max(st.st_mtime_ns, st.st_ctime_ns) / 1e9
        if st.st_size != digest.size or time.time() - newest < self.RACY_SECONDS:
            return
        with self._lock:
            self._entries[p] = [*self._key(st), digest.sha256]
            self._dirty = True

    def save(self) -> None:
        """Write atomically; a cache that cannot be written is simply not kept."""
        if not self._dirty:
            return
        from .fileio import atomic_write_bytes

        data = json.dumps({"version": self.VERSION, "entries": self._entries}).encode()
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, data)
            self._dirty = False


def hash_with_cache(
    paths: list[Path],
    *,
    stat_cache: DigestSource | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FileDigest]:
    """Digests in input order: known ones from ``stat_cache``, the rest hashed in parallel.

    ``stat_cache`` is any :class:`DigestSource`; one that
    can be saved (a :class:`StatCache`) is saved afterwards.
    """
    out: list[FileDigest | None] = [stat_cache.get(p) if stat_cache else None for p in paths]
    todo = [i for i, d in enumerate(out) if d is None]
    fresh = hash_files([paths[i] for i in todo], progress=progress) if todo else []
    for i, digest in zip(todo, fresh, strict=True):
        out[i] = digest
        if stat_cache is not None:
            stat_cache.put(paths[i], digest)
    save = getattr(stat_cache, "save", None)
    if callable(save):
        save()
    return [d for d in out if d is not None]
