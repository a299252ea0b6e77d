"""Bounded downloads: every remote read has a size cap and a total deadline.

A mirror is untrusted. It may answer with endless data (a size cap stops it)
or trickle one byte every few seconds so that no per-read timeout ever fires
(only a deadline for the whole download stops it). :class:`HttpFetcher` is the
one place the registry talks to the network; the plain remote registry and the
TUF client (through :class:`TufFetcher`) both download through it, so the two
bounds hold for every byte either of them reads. Tests and the benchmark plug
other fetchers into the same seam.
"""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from ..errors import UnreadableInputError, UsageError

__all__ = [
    "DEADLINE_S",
    "MAX_DOWNLOAD_BYTES",
    "Fetcher",
    "HttpError",
    "HttpFetcher",
    "default_fetcher",
]

#: Largest envelope / listing a client downloads.
MAX_DOWNLOAD_BYTES = 16 * 1024 * 1024
#: Longest one download may take, start to last byte (slow-retrieval bound).
DEADLINE_S = 30.0
_CHUNK = 64 * 1024


class HttpError(UnreadableInputError):
    """The server answered with an HTTP error status (404 for a missing file)."""

    def __init__(self, url: str, status: int) -> None:
        super().__init__(url, f"cannot download: HTTP {status}")
        self.status = status


class Fetcher(Protocol):
    """Downloads one URL, whole, within ``limit`` bytes (the seam tests replace)."""

    def fetch(self, url: str, limit: int) -> bytes: ...


def _too_large(url: str, limit: int) -> UnreadableInputError:
    return UnreadableInputError(url, f"cannot download: larger than {limit} bytes (size cap)")


def _too_slow(url: str, deadline: float) -> UnreadableInputError:
    return UnreadableInputError(
        url, f"cannot download: not complete within {deadline:g} s (download deadline)"
    )


class HttpFetcher:
    """http(s):// and file:// downloads with a size cap and a total deadline each.

    Connections are pooled (urllib3, thread-safe), so a client that fetches
    many small files in parallel reuses them instead of reconnecting.
    """

    def __init__(self, deadline_s: float = DEADLINE_S) -> None:
        self.deadline_s = deadline_s
        self.requests = 0  # every request sent, for the benchmark's request budget
        self._lock = threading.Lock()
        self._pool: Any = None

    def prepare(self) -> None:
        """Import urllib3 and make the connection pool now, on the calling thread.

        A thread that starts downloads calls this first: worker threads that
        import urllib3 themselves (25 ms of CPU) share the GIL with whatever
        the caller does meanwhile, and both take twice as long; imported first,
        the requests leave at once and their round trip overlaps the caller's work.
        """
        self._manager()

    def _manager(self) -> Any:
        with self._lock:
            if self._pool is None:
                import urllib3

                self._pool = urllib3.PoolManager(maxsize=32, retries=False)
            return self._pool

    def fetch(self, url: str, limit: int) -> bytes:
        with self._lock:
            self.requests += 1
        if urllib.parse.urlsplit(url).scheme == "file":
            return _read_file_url(url, limit)
        return b"".join(self.stream(url, limit))

    def stream(self, url: str, limit: int) -> Iterator[bytes]:
        """The body in chunks, raising as soon as it is too large or too late."""
        import urllib3

        start = time.monotonic()
        timeout = urllib3.Timeout(connect=min(10.0, self.deadline_s), read=self.deadline_s)
        try:
            resp = self._manager().request(
                "GET", url, preload_content=False, timeout=timeout, redirect=True
            )
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
            raise UnreadableInputError(url, f"cannot download: {_reason(exc)}") from exc
        try:
            if resp.status != 200:
                raise HttpError(url, resp.status)
            yield from self._chunks(resp, url, limit, start)
        finally:
            resp.release_conn() if resp.isclosed() else resp.close()

    def _chunks(self, resp: Any, url: str, limit: int, start: float) -> Iterator[bytes]:
        import urllib3

        declared = resp.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise _too_large(url, limit)
        received = 0
        while True:
            left = self.deadline_s - (time.monotonic() - start)
            if left <= 0:
                raise _too_slow(url, self.deadline_s)
            try:
                chunk = resp.read1(_CHUNK)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if time.monotonic() - start >= self.deadline_s:
                    raise _too_slow(url, self.deadline_s) from exc
                raise UnreadableInputError(url, f"cannot download: {_reason(exc)}") from exc
            if not chunk:
                return
            received += len(chunk)
            if received > limit:
                raise _too_large(url, limit)
            yield chunk


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc)


def _read_file_url(url: str, limit: int) -> bytes:
    from urllib.request import url2pathname

    from ..fileio import read_bounded

    path = Path(url2pathname(urllib.parse.urlsplit(url).path))
    if not path.is_file():
        raise HttpError(url, 404)
    return read_bounded(path, limit, kind="registry file")


_DEFAULT: HttpFetcher | None = None


def default_fetcher() -> HttpFetcher:
    """The process-wide fetcher (one connection pool).

    ``SONIC_REGISTRY_DOWNLOAD_DEADLINE`` (seconds) overrides the per-download deadline.
    """
    global _DEFAULT
    deadline = _deadline_from_env()
    if _DEFAULT is None or _DEFAULT.deadline_s != deadline:
        _DEFAULT = HttpFetcher(deadline)
    return _DEFAULT


def _deadline_from_env() -> float:
    import os

    text = os.environ.get("SONIC_REGISTRY_DOWNLOAD_DEADLINE")
    if not text:
        return DEADLINE_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 86400:
        raise UsageError(
            "SONIC_REGISTRY_DOWNLOAD_DEADLINE", f"expected seconds (0 < s < 86400), found {text!r}"
        )
    return value
