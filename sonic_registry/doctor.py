"""``doctor``: walk a models folder and say, per weight file, what it is and what to do.

Works on a ComfyUI models folder (``models/sonic/unet.pth``,
``models/checkpoints/svd_xt_1_1.safetensors``) and on a Sonic checkout
(``checkpoints/Sonic/unet.pth``, ``checkpoints/RIFE/flownet.pkl``,
``checkpoints/stable-video-diffusion-img2vid-xt/...``) alike: files are
found by extension or content (:func:`sonic_registry.formats.is_weight_file`)
and identified by digest, so the layout does not matter.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from packaging.version import Version

from .errors import UnreadableInputError
from .identify import Identification, identify_files

if TYPE_CHECKING:
    from .digest import StatCache
    from .known import ReleaseSource

__all__ = [
    "DoctorReport",
    "DoctorRow",
    "diagnose",
    "find_weight_files",
    "link_root",
    "link_target",
    "total_bytes",
]


@dataclass(frozen=True)
class DoctorRow:
    rel: str  # path relative to the models folder
    ident: Identification
    action: str
    problem: bool  # True when the action is needed before this file can be trusted

    def to_dict(self) -> dict[str, Any]:
        best = self.ident.best
        return {
            "path": self.rel,
            "size": self.ident.size,
            "sha256": self.ident.sha256 or None,
            "format": self.ident.format,
            "status": self.ident.status,
            "release": f"{best.model}@{best.version}" if best else None,
            # Only a signed release has a serial worth naming.
            "release_id": (
                best.statement.release.release_id if best and best.statement.signers else None
            ),
            "role": best.role if best else None,
            "training_step": best.training_step if best else None,
            "advice": self.action,
            "action": self.action,
            "problem": self.problem,
        }


@dataclass(frozen=True)
class DoctorReport:
    models_dir: str
    rows: tuple[DoctorRow, ...]

    @property
    def ok(self) -> bool:
        return not any(r.problem for r in self.rows)

    @property
    def total_bytes(self) -> int:
        return sum(r.ident.size for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "models_dir": self.models_dir,
            "files": [r.to_dict() for r in self.rows],
        }


def link_root(models_dir: str | Path) -> Path:
    """The folder a link under ``models_dir`` may lead into, and no further.

    The models folder itself, or, inside a Hugging Face cache, the repository
    folder (``models--owner--name``) whose ``snapshots/<rev>/`` links point
    into its ``../../blobs/``.
    """
    real = Path(models_dir).resolve()
    for folder in (real, *real.parents):
        if folder.name.startswith("models--") and (folder / "blobs").is_dir():
            return folder
    return real


def link_target(link: Path, root: str | Path) -> Path | None:
    """The file ``link`` leads to when it stays inside :func:`link_root` of ``root``
    (a Hugging Face snapshot's blob), else None: a link that leaves the folder, or
    dangles, is never followed. The one rule ``identify`` and ``doctor`` share."""
    target = link.resolve()
    return target if target.is_relative_to(link_root(root)) and target.is_file() else None


def find_weight_files(models_dir: str | Path) -> list[Path]:
    """Every weight file under ``models_dir`` (hidden folders such as .git/.cache skipped).

    Links are listed as links (the caller decides, with :func:`link_root`,
    whether to follow them); an HF cache's ``blobs/`` is reached through its
    snapshot links, not walked a second time.
    """
    from .formats import is_weight_file

    root = Path(models_dir)
    if not root.is_dir():
        raise UnreadableInputError(str(root), "expected a models folder")
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        cache_repo = Path(dirpath).name.startswith("models--")
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and not (cache_repo and d == "blobs")
        )
        for name in sorted(filenames):
            p = Path(dirpath) / name
            if name.startswith("."):
                continue
            if p.is_symlink() or (p.is_file() and is_weight_file(p)):
                found.append(p)
    return found


def total_bytes(paths: list[Path]) -> int:
    """Bytes a doctor run will hash (a progress total); dangling links count 0."""
    total = 0
    for p in paths:
        with contextlib.suppress(OSError):
            total += p.stat().st_size
    return total


def _root_of(path: Path, roots: Sequence[Path]) -> Path:
    """The first of ``roots`` that ``path`` was found under (the folder a link may not leave)."""
    return next((r for r in roots if path.is_relative_to(r)), roots[0])


def _followed(paths: list[Path], roots: Sequence[Path]) -> tuple[list[Path], dict[Path, Path]]:
    """The files to hash (a link's target when it stays inside its folder's link root),
    and each link that leaves it (or dangles), with its target."""
    to_hash: list[Path] = []
    outside: dict[Path, Path] = {}
    for p in paths:
        target = link_target(p, _root_of(p, roots)) if p.is_symlink() else p
        if target is None:
            outside[p] = p.resolve()
        else:
            to_hash.append(target)
    return to_hash, outside


def _newest_versions(idents: list[Identification]) -> dict[str, Identification]:
    newest: dict[str, Identification] = {}
    for ident in idents:
        m = ident.best
        if m is None:
            continue
        cur = newest.get(m.model)
        if cur is None or Version(m.version) > Version(cur.best.version):  # type: ignore[union-attr]
            newest[m.model] = ident
    return newest


def _action(ident: Identification, newest: dict[str, Identification]) -> tuple[str, bool]:
    """The file's own verdict (:func:`~sonic_registry.identify.judge`), plus mixing."""
    from .identify import judge

    _status, advice, problem = judge(ident)
    m = ident.best
    if m is None or ident.pointer is not None:
        return advice, problem
    top = newest[m.model].best
    assert top is not None
    if top.version != m.version and not any(
        c.covers(m.model, m.version, m.role or "") for c in top.statement.release.compatible_with
    ):
        return (
            f"from {m.model} {m.version} beside {top.model} {top.version} files: releases must "
            f"not be mixed; replace it with the {top.model} {top.version} file",
            True,
        )
    return advice, problem


def diagnose(
    models_dir: str | Path,
    registry: ReleaseSource,
    *,
    stat_cache: StatCache | None = None,
    progress: Callable[[int], None] | None = None,
    files: list[Path] | None = None,
    extra_roots: Sequence[Path] = (),
) -> DoctorReport:
    """Identify every weight file under ``models_dir`` and say what to do about each.

    ``extra_roots`` are more folders ``files`` come from (ComfyUI's extra model
    folders): their files are named by full path, their links confined to them,
    and mixing is judged across all folders.
    """
    root = Path(models_dir)
    roots = (root, *extra_roots)
    paths = files if files is not None else find_weight_files(root)
    to_hash, outside = _followed(paths, roots)
    hashed = identify_files(
        to_hash,
        registry,
        stat_cache=stat_cache,
        progress=progress,
        names=[str(p) for p in paths if p not in outside],
    )
    found = iter(hashed)
    idents = [
        Identification.outside_link(str(p), str(outside[p])) if p in outside else next(found)
        for p in paths
    ]
    newest = _newest_versions(idents)
    rows = []
    for path, ident in zip(paths, idents, strict=True):
        action, problem = _action(ident, newest)
        rel = path.relative_to(root) if path.is_relative_to(root) else path
        rows.append(DoctorRow(rel.as_posix(), ident, action, problem))
    return DoctorReport(str(root), tuple(rows))
