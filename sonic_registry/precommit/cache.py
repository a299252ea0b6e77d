"""The hook's caches: per-file digests (a StatCache) and a verdict per bundle.

Both live under ``$GIT_DIR/sonic-registry/`` and are trusted only by the hook,
never by ``sonic-registry verify``. A verdict records everything that decided
a bundle's last pass: the sha256 of its envelope, a fingerprint of the trust
input, the stat key of every file of the bundle, and the time until which the
verdict holds (the earliest expiry of the release and of any trusted key).
When all of that is unchanged, the bundle would pass again, and the hook says
so without importing the verifier.

A stale entry can never let a changed file pass: every stat key includes
``ctime``, which no user can set (rewriting a file and restoring its mtime
still moves it), and nothing is stored for files touched within
``RACY_SECONDS`` of "now" (Git's "racily clean" problem: a second write in the
same clock tick would leave every stat field unchanged).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..constants import RACY_SECONDS

if TYPE_CHECKING:
    from ..digest import StatCache

__all__ = ["RACY_SECONDS", "Caches", "StatKey", "VerdictCache", "is_racy", "snapshot", "stat_key"]

#: Bumped whenever the verdict format or the meaning of a verdict changes.
VERDICT_VERSION = 1

StatKey = list[int]


def _version() -> str:
    """Verdicts of another release of this package are not reused: its checks may differ."""
    from .. import __version__

    return f"{VERDICT_VERSION}/{__version__}"


def stat_key(st: os.stat_result) -> StatKey:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def snapshot(root: Path) -> dict[str, StatKey] | None:
    """Stat key of every file of a bundle; None if anything is not a plain file.

    Walks what :func:`sonic_registry.bundle.list_bundle_files` walks (dot
    entries skipped) plus the envelope. Links and special files make the
    snapshot unusable, so bundles containing them always take the full path.
    """
    out: dict[str, StatKey] = {}
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                return None
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), rel + "/"))
            elif entry.is_file(follow_symlinks=False):
                out[rel] = stat_key(entry.stat(follow_symlinks=False))
            else:
                return None
    return out


def is_racy(snap: Mapping[str, StatKey], now: float) -> bool:
    """A file touched within the clock's granularity of now could change unseen."""
    return any(now - max(k[1], k[2]) / 1e9 < RACY_SECONDS for k in snap.values())


class VerdictCache:
    """bundle path -> (envelope sha256, trust fingerprint, valid-until, file stat keys)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._dirty = False
        self._entries: dict[str, Any] = {}
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("version") == _version():
            entries = data.get("bundles")
            if isinstance(entries, dict):
                self._entries = entries

    def passes(
        self, root: Path, envelope_sha: str, trust_fp: str, snap: Mapping[str, StatKey]
    ) -> bool:
        """Did this exact bundle, with this exact trust input, pass before (and still hold)?"""
        entry = self._entries.get(os.path.realpath(root))
        return (
            isinstance(entry, dict)
            and entry.get("envelope") == envelope_sha
            and entry.get("trust") == trust_fp
            and isinstance(entry.get("until"), int | float)
            and time.time() < entry["until"]
            and entry.get("files") == snap
        )

    def record(
        self,
        root: Path,
        envelope_sha: str,
        trust_fp: str,
        until: float,
        snap: Mapping[str, StatKey],
    ) -> None:
        if is_racy(snap, time.time()):
            return
        self._entries[os.path.realpath(root)] = {
            "envelope": envelope_sha,
            "trust": trust_fp,
            "until": until,
            "files": dict(snap),
        }
        self._dirty = True

    def forget(self, root: Path) -> None:
        if self._entries.pop(os.path.realpath(root), None) is not None:
            self._dirty = True

    def save(self) -> None:
        """Write atomically; a cache that cannot be written is simply not kept."""
        if not self._dirty:
            return
        from ..fileio import atomic_write_bytes

        data = json.dumps({"version": _version(), "bundles": self._entries}).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, data)
        except OSError:
            return
        self._dirty = False


class Caches:
    """The hook's two caches (none with ``--no-cache``); the stat cache loads on first use.

    The warm path needs only the verdicts, so the stat cache (and the digest
    module behind it) is not even imported when every bundle is unchanged.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.verdicts = VerdictCache(directory / "verdicts.json") if directory else None
        self._stats: StatCache | None = None

    @property
    def stats(self) -> StatCache | None:
        if self._stats is None and self.directory is not None:
            from ..digest import StatCache

            self._stats = StatCache(self.directory / "statcache.json")
        return self._stats

    def save(self) -> None:
        if self.verdicts is not None:
            self.verdicts.save()
        if self._stats is not None:
            self._stats.save()
