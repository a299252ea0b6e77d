"""What the guard and the check need, opened once per configuration.

Opening a registry verifies its envelopes and loading the trust store parses
keys: too slow to repeat on every prompt, so the glue keeps one
:class:`PackContext` and reopens it only when the config file changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..model_folders import ModelFolders, as_model_folders
from .config import PackConfig, pack_dir

if TYPE_CHECKING:
    from ..bundle import VerifiedStatement
    from ..digest import StatCache
    from ..known import ReleaseSource

__all__ = ["KnownFile", "PackContext", "open_context"]


@dataclass(frozen=True, slots=True)
class KnownFile:
    """A file some known release lists: what a same-named, same-sized file should be."""

    model: str
    release_id: str
    role: str | None
    sha256: str


@dataclass
class PackContext:
    """The config, the release source, the model folders and the digest cache.

    ``models`` is where ComfyUI loads model files from: its ``models`` folder and,
    per folder name, the folders it searches (``extra_model_paths.yaml``'s too).
    The glue refreshes it from ``folder_paths`` before each use.
    """

    config: PackConfig
    releases: ReleaseSource
    models: ModelFolders
    input_dir: Path | None = None
    stat_cache: StatCache | None = None
    statements: tuple[VerifiedStatement, ...] = ()
    _by_name: dict[tuple[str, int], list[KnownFile]] | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def models_dir(self) -> Path:
        """ComfyUI's own ``models`` folder."""
        return self.models.root

    def same_name_and_size(self, name: str, size: int) -> list[KnownFile]:
        """Files of known releases with this base name and size (tamper detection)."""
        with self._lock:
            if self._by_name is None:
                self._by_name = _index_by_name(self.statements)
            return list(self._by_name.get((name, size), ()))


def _index_by_name(
    statements: Iterable[VerifiedStatement],
) -> dict[tuple[str, int], list[KnownFile]]:
    out: dict[tuple[str, int], list[KnownFile]] = {}
    for s in statements:
        for path, subject in s.subjects.items():
            comp = s.release.component_for_path(path)
            out.setdefault((PurePosixPath(path).name, subject.size), []).append(
                KnownFile(
                    s.release.model,
                    s.release.release_id,
                    comp.role if comp else None,
                    subject.sha256,
                )
            )
    return out


def _all_statements(source: ReleaseSource) -> tuple[VerifiedStatement, ...]:
    """Every release the source can list: the registry's, then the catalog's."""
    from ..known import KnownReleases, catalog_statement

    if not isinstance(source, KnownReleases):
        return ()
    found = list(source.registry.releases()) if source.registry is not None else []
    if source.catalog is not None:
        found += [catalog_statement(r) for r in source.catalog.releases]
    return tuple(found)


def open_releases(config: PackConfig) -> ReleaseSource:
    """The registry the config names (if any) plus the built-in catalog (unless turned off).

    With neither, an empty in-memory registry: every file is then unknown.
    """
    from ..catalog import load_catalog
    from ..known import KnownReleases
    from ..registry import Registry
    from ..registry.core import MEMORY
    from ..trust import TrustStore

    registry = None
    if config.registry is not None and config.trust is not None:
        registry = Registry(config.registry, TrustStore.load(config.trust))
    catalog = load_catalog() if config.builtin_catalog else None
    if registry is None and catalog is None:
        return Registry(MEMORY, TrustStore())
    return KnownReleases(registry, catalog)


def open_context(
    config: PackConfig,
    models_dir: str | Path | ModelFolders,
    *,
    user_dir: str | Path | None = None,
    input_dir: str | Path | None = None,
) -> PackContext:
    """Open the releases and the digest cache (``<user>/sonic_registry/digests.json``)."""
    from ..digest import StatCache

    releases = open_releases(config)
    cache = StatCache(pack_dir(user_dir) / "digests.json") if user_dir is not None else None
    return PackContext(
        config=config,
        releases=releases,
        models=as_model_folders(models_dir),
        input_dir=Path(input_dir) if input_dir is not None else None,
        stat_cache=cache,
        statements=_all_statements(releases),
    )


def status_rank() -> Mapping[str, int]:
    """Badge statuses, worst first (a node loading several files shows the worst)."""
    order = ("tampered", "mixed", "other_model", "missing", "unknown", "community", "published")
    return {s: i for i, s in enumerate((*order, "official"))}
