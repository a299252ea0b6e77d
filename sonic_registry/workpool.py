"""The hashing threads: one small pool that the thread waiting for its results joins.

Every hasher (whole files, shards, OMS resources, the hashing ``verify``
starts before checking signatures) runs its items here. hashlib and ``preadv``
release the GIL, so threads hash on every core.

Plain threads rather than :mod:`concurrent.futures`, for two measured reasons
(``python -m bench``, 1 GiB verify on two cores):

* importing :mod:`concurrent.futures` (and the :mod:`logging` it pulls in)
  costs about 6 ms of CPU on the path before ``verify`` hashes its first byte
  (``python -X importtime``), time the hashing waits for;
* the thread that needs the results works through the remaining items itself
  (:meth:`WorkPool.finish`). ``verify`` starts hashing on one thread fewer
  than the cores while its own thread imports and checks signatures, then
  joins in: with a hashing thread per core from the start, that thread loses
  the CPU and the GIL to them and finishes its checks after the hashing did.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["WorkPool", "default_threads", "pool_map"]

_T = TypeVar("_T")
_R = TypeVar("_R")


def default_threads() -> int:
    """One hashing thread per usable core (hashlib releases the GIL).

    ``SONIC_REGISTRY_THREADS=N`` overrides it (benchmarks compare 1 vs 2
    threads; a shared CI box may want fewer); an unusable value is ignored.
    """
    env = os.environ.get("SONIC_REGISTRY_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class WorkPool(Generic[_T, _R]):
    """``fn`` over ``items`` on ``background`` threads, joined by whoever calls :meth:`finish`.

    Items are taken in input order by whichever thread is free; after one
    fails, no new item starts.
    """

    def __init__(self, fn: Callable[[_T], _R], items: Sequence[_T], *, background: int) -> None:
        self._fn = fn
        self._items = items
        self._results: list[Any] = [None] * len(items)
        self._failures: list[tuple[int, BaseException]] = []
        self._lock = threading.Lock()
        self._todo = iter(range(len(items)))
        self._threads = [
            threading.Thread(target=self._work, name=f"sonic-hash_{k}", daemon=True)
            for k in range(background)
        ]
        for t in self._threads:
            t.start()

    @property
    def busy(self) -> bool:
        """Whether a background thread is still running an item."""
        return any(t.is_alive() for t in self._threads)

    def _work(self) -> None:
        while True:
            with self._lock:
                i = None if self._failures else next(self._todo, None)
            if i is None:
                return
            try:
                self._results[i] = self._fn(self._items[i])
            except BaseException as exc:  # re-raised by finish(), in the calling thread
                with self._lock:
                    self._failures.append((i, exc))
                return

    def finish(self, *, join_in: bool = True) -> list[_R]:
        """The results in input order, working through what is left unless ``join_in`` is False.

        Raises the error of the first failing item (in input order), as
        ``ThreadPoolExecutor.map`` would.
        """
        if join_in:
            self._work()
        for t in self._threads:
            t.join()
        if self._failures:
            raise min(self._failures, key=lambda f: f[0])[1]
        return list(self._results)

    def stop(self, reason: BaseException) -> None:
        """Start no new item (``finish`` raises ``reason``); wait for the items being run."""
        with self._lock:
            self._failures.append((-1, reason))
        for t in self._threads:
            t.join()


def pool_map(fn: Callable[[_T], _R], items: Sequence[_T], threads: int | None = None) -> list[_R]:
    """``[fn(item) for item in items]`` on at most ``threads`` threads (the caller's included).

    ``threads`` defaults to :func:`default_threads`; one item, or one thread,
    runs in the calling thread alone.
    """
    workers = min(len(items), threads or default_threads())
    if workers <= 1:
        return [fn(item) for item in items]
    return WorkPool(fn, items, background=workers - 1).finish()
