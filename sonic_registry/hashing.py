"""Reading byte ranges and hashing them: the streaming SHA-256 loop and the shard plan.

Why shards: a SHA-256 of one 6 GB file is inherently sequential, so on a
multi-core machine verifying one big checkpoint would use one core. ``sign``
therefore also records the SHA-256 of every ``SHARD_SIZE`` slice of large files
(all inside the signed statement), and ``verify`` checks those slices on every
core at once (:mod:`.workpool`).

Memory stays flat: every task reads through one fixed buffer with ``preadv``;
nothing ever holds a whole file. This module imports only the standard
library's hashing and OS modules, so ``verify`` can start hashing before the
rest of the library loads (:mod:`.prehash`).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import UnreadableInputError

if TYPE_CHECKING:
    from .digest import ShardedDigest

__all__ = [
    "CHUNK_SIZE",
    "SHARD_SIZE",
    "Progress",
    "ShardPlan",
    "hash_range",
    "open_file",
    "stat_size",
]

#: Read size per call: big enough to amortise syscalls, small enough for L2/L3.
CHUNK_SIZE = 1 << 20
#: Slices of large files that are signed separately so they verify in parallel.
SHARD_SIZE = 64 << 20

Progress = Callable[[int], None]


def open_file(path: Path) -> int:
    """A read-only descriptor of ``path`` (never following a final symlink); one-line errors."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError as exc:
        raise UnreadableInputError(str(path), "no such file") from exc
    except OSError as exc:
        raise UnreadableInputError(str(path), f"cannot read: {exc.strerror}") from exc


def hash_range(
    path: Path,
    start: int = 0,
    length: int | None = None,
    *,
    progress: Progress | None = None,
    fd: int | None = None,
) -> tuple[str, int]:
    """SHA-256 of ``length`` bytes from ``start`` (to EOF when None); returns (hex, bytes read)."""
    own = fd is None
    handle = open_file(path) if fd is None else fd
    try:
        h = hashlib.sha256()
        buf = bytearray(CHUNK_SIZE)
        view = memoryview(buf)
        pos = start
        remaining = length
        total = 0
        while remaining is None or remaining > 0:
            want = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
            n = os.preadv(handle, [view[:want]], pos)
            if n == 0:
                break
            h.update(view[:n])
            pos += n
            total += n
            if remaining is not None:
                remaining -= n
            if progress is not None:
                progress(n)
        return h.hexdigest(), total
    except OSError as exc:
        raise UnreadableInputError(str(path), f"cannot read: {exc.strerror}") from exc
    finally:
        if own:
            os.close(handle)


class ShardPlan:
    """The byte ranges :func:`sharded_digests` hashes, and how their digests make the result.

    Files no larger than one shard get no shard list: their whole digest is as
    cheap. Tasks are ordered longest first so no long one starts last.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        *,
        shard_size: int | Sequence[int] = SHARD_SIZE,
        whole: bool = True,
        sizes: Sequence[int] | None = None,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.sizes = list(sizes) if sizes is not None else [stat_size(p) for p in self.paths]
        n = len(self.paths)
        self.shard_sizes = [shard_size] * n if isinstance(shard_size, int) else list(shard_size)
        #: (file index, shard index or -1 for the whole file, start, length or -1 to EOF)
        self.tasks: list[tuple[int, int, int, int]] = []
        for i, size in enumerate(self.sizes):
            step = self.shard_sizes[i]
            if size > step:
                for k, start in enumerate(range(0, size, step)):
                    self.tasks.append((i, k, start, min(step, size - start)))
            if whole or size <= step:
                self.tasks.append((i, -1, 0, -1))
        self.tasks.sort(key=lambda t: -(self.sizes[t[0]] if t[3] < 0 else t[3]))

    def hash_task(
        self, task: tuple[int, int, int, int], progress: Progress | None = None
    ) -> tuple[int, int, str, int]:
        """Hash one task's range: (file index, shard index, hex digest, bytes read)."""
        i, k, start, length = task
        hexdigest, n = hash_range(
            self.paths[i], start, None if length < 0 else length, progress=progress
        )
        return i, k, hexdigest, n

    def digests(self, results: Iterable[tuple[int, int, str, int]]) -> list[ShardedDigest]:
        """Each file's :class:`.digest.ShardedDigest` from the results of every task, in path order.

        Imported here: the digest values module loads :mod:`dataclasses` (and
        :mod:`inspect`), ~4 ms that need not precede the first hashed byte.
        """
        from .digest import ShardedDigest

        whole_hex: dict[int, tuple[str, int]] = {}
        shard_hex: dict[int, dict[int, str]] = {}
        for i, k, hexdigest, n in results:
            if k < 0:
                whole_hex[i] = (hexdigest, n)
            else:
                shard_hex.setdefault(i, {})[k] = hexdigest
        out = []
        for i, size in enumerate(self.sizes):
            shards = tuple(v for _, v in sorted(shard_hex.get(i, {}).items()))
            digest, n = whole_hex.get(i, ("", size))
            out.append(
                ShardedDigest(digest, n if i in whole_hex else size, self.shard_sizes[i], shards)
            )
        return out


def stat_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError as exc:
        raise UnreadableInputError(str(path), "no such file") from exc
    except OSError as exc:
        raise UnreadableInputError(str(path), f"cannot stat: {exc.strerror}") from exc
