"""``sonic-registry-hook workflows``: every workflow resolves to one release, params in range.

Workflows are ComfyUI JSON (UI or API format) and ``pipeline.toml``-style
graphs, recognised by content. Each is resolved (:mod:`sonic_registry.resolver`:
one release per graph, slot interfaces, runtime) against the releases of the
repository's own signed bundles or of a registry, and the parameters the
release signs ranges for are judged (:mod:`sonic_registry.params`): outside
``allowed`` is refused, a warning does not fail the commit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..constants import ENVELOPE_NAME, MAX_WORKFLOW_BYTES, TOML_NAME
from ..fileio import read_regular
from .repo import repo_files

if TYPE_CHECKING:
    from ..digest import StatCache
    from .trust_input import Trust

__all__ = ["find_workflows", "is_workflow", "lfs_aware_cache", "workflows"]


def is_workflow(path: str | Path) -> bool:
    """A ComfyUI workflow (UI or API JSON) or a ``pipeline.toml``-style graph, by content."""
    p = Path(path)
    suffix = p.suffix.lower()
    if p.name in (ENVELOPE_NAME, TOML_NAME) or suffix not in (".json", ".toml"):
        return False
    try:
        if p.stat().st_size > MAX_WORKFLOW_BYTES:
            return False
        data = read_regular(p, MAX_WORKFLOW_BYTES + 1)  # never blocks on a FIFO
        if suffix == ".toml":
            import tomllib

            doc = tomllib.loads(data.decode("utf-8"))
        else:
            doc = json.loads(data)
    except (OSError, ValueError, RecursionError):
        return False
    from ..workflows import graph_format

    fmt = graph_format(doc)
    # A .toml file is a pipeline; a .json file a ComfyUI workflow (either format).
    return fmt is not None and (fmt == "pipeline.toml") == (suffix == ".toml")


def find_workflows(under: Sequence[Path] = (Path("."),)) -> list[str]:
    return sorted(n for n in repo_files(under) if is_workflow(n))


def lfs_aware_cache(cache_path: Path) -> StatCache:
    """A stat cache that answers for LFS pointers with the digest they point to.

    The resolver identifies a file by the digest of its bytes; in a checkout
    where weights are LFS pointers, the bytes a workflow will load are the
    pointed-to content, whose sha256 is the pointer's oid (git-lfs checks it on
    download). Pointers are read each time, never stored.
    """
    from ..digest import FileDigest, StatCache
    from ..lfs import MAX_POINTER_SIZE, read_pointer

    def pointer(file_path: str | Path) -> FileDigest | None:
        try:
            if os.stat(file_path).st_size >= MAX_POINTER_SIZE:
                return None
            found = read_pointer(file_path)
        except (OSError, ValueError):
            return None
        return FileDigest(found.oid, found.size) if found else None

    class LfsStatCache(StatCache):
        def get(self, file_path: str | Path) -> FileDigest | None:
            return pointer(file_path) or super().get(file_path)

        def put(self, file_path: str | Path, digest: FileDigest) -> None:
            if pointer(file_path) is None:
                super().put(file_path, digest)

    return LfsStatCache(cache_path)


def _in_workflow(workflow: str, problem: object) -> str:
    """One hook line that names the workflow it is about.

    A problem about a weight file (``models/x.safetensors: no such file``)
    names only that file; in a repository of several workflows the reader must
    know which one loads it.

    >>> _in_workflow("a.json", "models/x.safetensors: no such file")
    'a.json: models/x.safetensors: no such file'
    >>> _in_workflow("a.json", "a.json: releases must not be mixed")
    'a.json: releases must not be mixed'
    """
    line = str(problem)
    return line if line.startswith(f"{workflow}: ") else f"{workflow}: {line}"


def workflows(
    files: Iterable[str],
    trust: Trust,
    *,
    registry: str | None = None,
    registry_root: Path | None = None,
    models_dir: Path = Path("."),
    bundles: Sequence[Path] = (),
    stat_cache: StatCache | None = None,
    builtin_catalog: bool = True,
    require_signed: bool = False,
) -> list[str]:
    """One ``path: problem`` line per problem of each workflow in ``files``.

    Releases come from ``registry`` when given (through TUF when ``registry_root``
    pins its root.json), else from the signed bundles of
    the repository itself (``bundles``), verified with the hook's trust input;
    plus the built-in catalog of the published Sonic files unless turned off.
    """
    from ..errors import SonicRegistryError
    from ..registry import Registry, open_registry
    from ..resolver import analyze_graph
    from ..workflows import load_graph

    files = list(files)
    if not files:
        return []
    store = trust.load()
    out: list[str] = []
    if registry is not None:
        reg = open_registry(registry, store, tuf_root=registry_root)
    else:
        # A bundle whose envelope does not verify is the verify hook's to report;
        # here its files simply stay unknown, hence refused.
        envelopes = [root / ENVELOPE_NAME for root in bundles]
        reg = Registry.from_envelopes(envelopes, store, skip_invalid=True)
    from ..catalog import load_catalog
    from ..known import KnownReleases

    with KnownReleases(reg, load_catalog() if builtin_catalog else None) as known:
        for f in files:
            try:
                res = analyze_graph(
                    load_graph(f),
                    known,
                    models_dir,
                    stat_cache=stat_cache,
                    require_signed=require_signed,
                )
            except SonicRegistryError as exc:
                out += [_in_workflow(f, p) for p in exc.problems]
                continue
            # The resolver's step 6 judged the parameters (params.check_graph_params),
            # the same judgement `resolve` and `check-params --workflow` give.
            out += [_in_workflow(f, p) for p in res.problems]
    return out
