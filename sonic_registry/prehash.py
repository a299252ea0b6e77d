"""Start hashing a bundle's files while its signature is still being checked.

A full ``verify`` is bound by hashing: on two cores, two hashing threads are
as fast as two ``openssl dgst`` processes. What separates the two is the CPU
``verify`` spends before its first byte is hashed: importing the signature,
schema and version code, loading keys, checking signatures. Here hashing
starts as soon as the envelope names its subjects, and that work runs beside
it instead of before it.

This is *speculative* and trusts nothing: the envelope is only read to learn
which byte ranges to hash (``release.dsse.json`` of a bundle is a few kB);
each path goes through the same confinement rule as ``verify``
(:func:`.confine.confined`); and a digest computed here is used by
:func:`.bundle.check_files` only for the same real path, shard size and stat
(inode, size, mtime, ctime) that ``verify`` itself finds after the signatures
and the statement passed every check, and is then compared with the signed
digest exactly like its own. A preview that cannot be read simply hashes
nothing; if the signatures fail, the remaining work is cancelled.

The module imports nothing heavy (no cryptography, packaging or click), so the
command line can start it before loading the rest of the verifier.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .canonical import b64decode_dsse
from .confine import confined
from .constants import ENVELOPE_NAME, MAX_ENVELOPE_BYTES
from .errors import SonicRegistryError
from .fileio import read_regular
from .hashing import ShardPlan
from .workpool import WorkPool, default_threads

if TYPE_CHECKING:
    from .digest import ShardedDigest

__all__ = ["Prehash", "start_prehash"]

Progress = Callable[[int], None]
#: What a digest is valid for: (real path, shard size, inode, device, size, mtime_ns, ctime_ns).
_Key = tuple[str, int, int, int, int, int, int]


#: GIL switch interval while hashing beside the main thread (seconds).
SWITCH_INTERVAL = 0.0002


class _Cancelled(Exception):
    """Raised inside the hashing threads to stop them between two reads."""


def stat_key(real: str, shard_size: int, st: os.stat_result) -> _Key:
    return (real, shard_size, st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Prehash:
    """Digests being computed in the background for the files a bundle's envelope lists.

    Hashing runs on one thread fewer than the cores while the calling thread
    imports the signature code and checks signatures; :meth:`take` then makes
    the calling thread hash what is left (:class:`.workpool.WorkPool`).
    """

    def __init__(
        self,
        jobs: list[_Key],
        *,
        threads: int | None = None,
        progress: Progress | None = None,
        serves: tuple[str, bool] = ("", True),
    ) -> None:
        self._jobs = jobs
        self._planned = frozenset(jobs)
        #: (real path of the bundle, prefer_blake3): the verify this hashing was started for.
        self.serves = serves
        self._progress = progress
        self._unreported = 0  # bytes hashed before a progress bar was attached
        self._progress_lock = threading.Lock()
        self._stop = threading.Event()
        self._done: dict[_Key, ShardedDigest] | None = None
        # While the main thread runs Python (imports, signature checks), a hashing
        # thread that finished a chunk waits for the GIL up to the switch
        # interval (5 ms by default, for ~0.6 ms of hashing per chunk): shorten it
        # until the digests are taken.
        self._interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._interval, SWITCH_INTERVAL))
        self._plan = ShardPlan(
            [job[0] for job in jobs],
            shard_size=[job[1] for job in jobs],
            sizes=[job[4] for job in jobs],
            whole=False,
        )
        workers = min(len(self._plan.tasks), threads or default_threads())
        self._join_in = workers > 1
        self._pool = WorkPool(
            partial(self._plan.hash_task, progress=self._tick),
            self._plan.tasks,
            background=max(1, workers - 1),
        )

    def _tick(self, n: int) -> None:
        if self._stop.is_set():
            raise _Cancelled
        progress = self._progress
        if progress is None:  # no bar attached yet (hashing started before the CLI loaded)
            with self._progress_lock:
                progress = self._progress
                if progress is None:
                    self._unreported += n
                    return
        progress(n)

    def report_to(self, progress: Progress | None) -> None:
        """Report hashed bytes to ``progress`` from now on (and those hashed until now)."""
        if progress is None:
            return
        with self._progress_lock:
            self._progress = progress
            done, self._unreported = self._unreported, 0
        progress(done)

    def _finish(self) -> dict[_Key, ShardedDigest]:
        if self._done is None:
            try:
                results = self._pool.finish(join_in=self._join_in)
                self._done = dict(zip(self._jobs, self._plan.digests(results), strict=True))
            except (_Cancelled, SonicRegistryError, OSError):
                self._done = {}  # verify hashes (and reports) whatever is missing here
            finally:
                sys.setswitchinterval(self._interval)
        return self._done

    def take(self, real: str, shard_size: int, st: os.stat_result) -> ShardedDigest | None:
        """The digest of ``real`` hashed here, if it is still the file ``st`` describes.

        The first call hashes, in the calling thread too, whatever is not hashed yet.
        """
        return self._finish().get(stat_key(real, shard_size, st))

    def covers(self, real: str, shard_size: int, st: os.stat_result) -> bool:
        """Whether ``take`` will answer for this file (then it is not hashed again)."""
        return stat_key(real, shard_size, st) in self._planned

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` stopped this hashing (and no thread of it still runs)."""
        return self._stop.is_set() and not self._pool.busy

    def cancel(self) -> None:
        """Stop hashing (the signatures failed): each thread stops after its current read."""
        self._stop.set()
        self._pool.stop(_Cancelled())
        self._finish()


def _blake3_available() -> bool:
    from .digest import blake3_available  # not at import: see ShardPlan.digests

    return blake3_available()


def _subject_jobs(root: Path, statement: Any, *, by_blake3: bool) -> list[_Key]:
    """(real path, shard size, stat) of each regular, confined subject of the signed size.

    ``by_blake3``: verify prefers BLAKE3, so subjects with a signed BLAKE3 digest
    are left to it when the module is installed (as :func:`.filecheck.check_files`
    decides); asked only then, since importing it costs start-up time.
    """
    real_root = os.path.realpath(root)
    jobs: list[_Key] = []
    for s in statement.get("subject", []):
        name, ann = s.get("name"), s.get("annotations", {})
        size, shards = ann.get("size"), ann.get("shards")
        if not isinstance(name, str) or type(size) is not int:
            continue
        if by_blake3 and "blake3" in s.get("digest", {}) and _blake3_available():
            continue  # verify checks BLAKE3 instead: leave the file to it
        shard_size = shards.get("size") if isinstance(shards, dict) else size + 1
        if type(shard_size) is not int or shard_size <= 0:
            continue
        try:
            real = confined(root, real_root, name)
            st = os.stat(real)
        except (SonicRegistryError, OSError):
            continue
        if st.st_size == size and not os.path.isdir(real):
            jobs.append(stat_key(real, shard_size, st))
    return jobs


def start_prehash(
    root: str | Path,
    *,
    threads: int | None = None,
    progress: Progress | None = None,
    prefer_blake3: bool = True,
    started: Prehash | None = None,
) -> Prehash | None:
    """Start hashing the subjects ``root/release.dsse.json`` lists; None if there is nothing.

    ``prefer_blake3`` must be what the verify it serves is given. ``started``:
    hashing begun earlier (by :mod:`sonic_registry.console`, before the
    command line was parsed); it is returned, reporting to ``progress``, when
    it was started for the same real folder and digest choice, and cancelled
    otherwise.
    """
    serves = (os.path.realpath(root), prefer_blake3)
    if started is not None:
        if started.serves == serves and threads is None:
            started.report_to(progress)
            return started
        started.cancel()
    base = Path(root)
    try:
        raw = read_regular(base / ENVELOPE_NAME, MAX_ENVELOPE_BYTES + 1)  # never a FIFO
        if len(raw) > MAX_ENVELOPE_BYTES:
            return None
        # read as verify reads it (both base64 alphabets); InvalidManifest is a ValueError
        payload = b64decode_dsse(json.loads(raw)["payload"], field="payload", where="")
        jobs = _subject_jobs(base, json.loads(payload), by_blake3=serves[1])
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return None
    if not jobs:
        return None
    return Prehash(jobs, threads=threads, progress=progress, serves=serves)
