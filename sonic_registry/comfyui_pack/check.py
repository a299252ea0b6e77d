"""The one-click check: ``doctor`` over ComfyUI's models folder, and badge statuses.

:func:`run_check` is what the menu command, the check node and
``GET /sonic_registry/check`` return: doctor's rows (file, release, role,
status, what to do) as JSON. Digests come from the pack's stat cache (size,
mtime, ctime, inode), so only the first check of a file reads it.
:func:`file_statuses` answers the badges from that cache alone and never
reads a weight file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..workflows.comfyui_nodes import NODE_SPECS
from .context import PackContext

__all__ = ["file_statuses", "run_check"]

#: Folders under ``models/`` that Sonic prompts load from (badges look only here).
BADGE_FOLDERS = ("sonic", "checkpoints")


def run_check(
    ctx: PackContext, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Doctor's report for the models folder and the extra model folders, with a
    per-status summary.

    Files under ``models/`` are named relative to it (``sonic/unet.pth``); files
    of an extra folder (``extra_model_paths.yaml``) by their full path.
    """
    from ..doctor import diagnose, find_weight_files

    extra = ctx.models.extra_dirs()
    # A file of nested extra folders is listed once, where first found (no list scan per file).
    found = dict.fromkeys(find_weight_files(ctx.models_dir))
    for folder in extra:
        found.update(dict.fromkeys(find_weight_files(folder)))
    files = list(found)
    total = sum(_size(p) for p in files)
    done = 0
    lock = threading.Lock()  # the hashing threads report progress concurrently

    def advance(n: int) -> None:
        nonlocal done
        with lock:
            done += n
            now = done
        if progress is not None:
            progress(now, total)

    report = diagnose(
        ctx.models_dir,
        ctx.releases,
        stat_cache=ctx.stat_cache,
        progress=advance,
        files=files,
        extra_roots=extra,
    )
    out = report.to_dict()
    summary: dict[str, int] = {}
    for row in out["files"]:
        summary[row["status"]] = summary.get(row["status"], 0) + 1
    out["summary"] = summary
    out["total_bytes"] = total
    out["skipped"] = list(ctx.releases.problems)
    out["extra_model_dirs"] = [str(p) for p in extra]
    return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def file_statuses(ctx: PackContext) -> dict[str, dict[str, Any]]:
    """``{"sonic/unet.pth": {status, release_id, role, sha256}}`` from the cache only.

    A file the cache does not know (never checked, or changed since) is
    ``unchecked``: run the check, or queue the prompt, to hash it. A name in
    several of a folder's places (``extra_model_paths.yaml``) is the file of the
    first, the one ComfyUI loads.
    """
    out: dict[str, dict[str, Any]] = {}
    for folder in BADGE_FOLDERS:
        home = (ctx.models.root / folder).resolve()
        for base, name in ctx.models.places(folder, f"{folder}/"):
            place = base / name
            _badges(ctx, folder, place, out, fixed_here=place.resolve() == home)
    return out


#: Files a node loads from a fixed path under ``models/`` (ComfyUI_Sonic's helpers):
#: never looked up in another of the folder's places, so their badge is that file's.
FIXED_PATHS = frozenset(
    f"{slot.folder}/{slot.name}" for spec in NODE_SPECS.values() for slot in spec.files if slot.name
)


def _badges(
    ctx: PackContext, folder: str, base: Path, out: dict[str, dict[str, Any]], *, fixed_here: bool
) -> None:
    """The badge of each file under ``base`` (one of ``folder``'s places) not named yet.

    ``fixed_here``: ``base`` is ``models/<folder>``, where fixed-path files are loaded from.
    """
    for dirpath, dirnames, names in os.walk(base):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in names:
            path = Path(dirpath) / name
            rel = f"{folder}/{path.relative_to(base).as_posix()}"
            if rel in out or (rel in FIXED_PATHS and not fixed_here):
                continue
            digest = ctx.stat_cache.get(path) if ctx.stat_cache is not None else None
            if digest is None:
                out[rel] = {"status": "unchecked"}
                continue
            matches = ctx.releases.lookup(digest.sha256)
            best = matches[0] if matches else None
            out[rel] = {
                "status": best.channel if best else "unknown",
                "release_id": best.statement.release.release_id if best else None,
                "role": best.role if best else None,
                "sha256": digest.sha256,
            }


def render_text(report: dict[str, Any]) -> str:
    """The check as plain text (the check node shows it; the web UI draws a table)."""
    lines = [f"models folder: {report['models_dir']}"]
    if report.get("extra_model_dirs"):
        lines.append(f"extra model folders: {', '.join(report['extra_model_dirs'])}")
    for row in report["files"]:
        lines.append(
            f"{row['path']}: {row['status']}"
            + (f", {row['release_id']} {row['role']}" if row["release_id"] else "")
            + f" -> {row['action']}"
        )
    if not report["files"]:
        lines.append("no weight files found")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(report.get("summary", {}).items()))
    lines.append(("ok" if report["ok"] else "action needed") + (f": {summary}" if summary else ""))
    return "\n".join(lines)
