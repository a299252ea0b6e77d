""" "Which checkpoint is this?": hash files and answer from the registry.

The one-click check a UI calls: :func:`identify_files` hashes each file
(reusing the stat cache for files that did not change, so re-identifying a
multi-GB checkpoint is instant) and reports every verified release that lists
those bytes, or that the registry does not know them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UnreadableInputError

if TYPE_CHECKING:
    from .digest import DigestSource, FileDigest, StatCache
    from .registry import Match, Registry

__all__ = ["Identification", "hash_with_cache", "identify_file", "identify_files"]


@dataclass(frozen=True)
class Identification:
    """A file, its digest and format, and the releases that list it (newest first)."""

    path: str
    sha256: str
    size: int
    format: str
    matches: tuple[Match, ...]

    @property
    def known(self) -> bool:
        return bool(self.matches)

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None

    @property
    def status(self) -> str:
        """``official``, ``community`` or ``unknown``."""
        return self.matches[0].channel if self.matches else "unknown"

    def describe(self) -> str:
        m = self.best
        if m is None:
            return f"{self.path}: unknown to the registry (sha256 {self.sha256[:16]}...)"
        from .trust import channel_label

        label = channel_label(m.channel, long=True)
        step = f" step {m.training_step}" if m.training_step is not None else ""
        also = (
            f" (also in {len(self.matches) - 1} other release(s))" if len(self.matches) > 1 else ""
        )
        return f"{self.path}: {m.model} {m.version} {m.role or m.path}{step} ({label}){also}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "sha256": self.sha256,
            "size": self.size,
            "format": self.format,
            "known": self.known,
            "status": self.status,
            "matches": [m.to_dict() for m in self.matches],
        }


def hash_with_cache(
    paths: list[Path],
    *,
    stat_cache: DigestSource | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[FileDigest]:
    """Digests in input order: known ones from ``stat_cache``, the rest hashed in parallel.

    ``stat_cache`` is any :class:`~sonic_registry.digest.DigestSource`; one that
    can be saved (a :class:`~sonic_registry.digest.StatCache`) is saved afterwards.
    """
    from .digest import hash_files

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


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UnreadableInputError(str(path), "no such file")
    if not path.is_file():
        raise UnreadableInputError(str(path), "not a regular file")


def identify_files(
    paths: Iterable[str | Path],
    registry: Registry,
    *,
    stat_cache: StatCache | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[Identification]:
    """Identify each file by its sha256 (never by its name)."""
    from .formats import sniff

    items = [Path(p) for p in paths]
    for p in items:
        _check_file(p)
    digests = hash_with_cache(items, stat_cache=stat_cache, progress=progress)
    lookups: dict[str, tuple[Match, ...]] = {}
    out = []
    for p, d in zip(items, digests, strict=True):
        if d.sha256 not in lookups:
            lookups[d.sha256] = registry.lookup(d.sha256)
        out.append(Identification(str(p), d.sha256, d.size, sniff(p), lookups[d.sha256]))
    return out


def identify_file(
    path: str | Path, registry: Registry, *, stat_cache: StatCache | None = None
) -> Identification:
    return identify_files([path], registry, stat_cache=stat_cache)[0]
