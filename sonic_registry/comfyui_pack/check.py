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

from .context import PackContext

__all__ = ["file_statuses", "run_check"]

#: Folders under ``models/`` that Sonic prompts load from (badges look only here).
BADGE_FOLDERS = ("sonic", "checkpoints")


def run_check(
    ctx: PackContext, progress: Callable[[int, int], None] | None = None
) -> dict[str, Any]:
    """Doctor's report for the models folder, with a per-status summary."""
    from ..doctor import diagnose, find_weight_files

    files = find_weight_files(ctx.models_dir)
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
    )
    out = report.to_dict()
    summary: dict[str, int] = {}
    for row in out["files"]:
        summary[row["status"]] = summary.get(row["status"], 0) + 1
    out["summary"] = summary
    out["total_bytes"] = total
    out["skipped"] = list(ctx.releases.problems)
    return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def file_statuses(ctx: PackContext) -> dict[str, dict[str, Any]]:
    """``{"sonic/unet.pth": {status, release_id, role, sha256}}`` from the cache only.

    A file the cache does not know (never checked, or changed since) is
    ``unchecked``: run the check, or queue the prompt, to hash it.
    """
    out: dict[str, dict[str, Any]] = {}
    for folder in BADGE_FOLDERS:
        base = ctx.models_dir / folder
        for dirpath, dirnames, names in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            for name in names:
                path = Path(dirpath) / name
                rel = path.relative_to(ctx.models_dir).as_posix()
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
    return out


def render_text(report: dict[str, Any]) -> str:
    """The check as plain text (the check node shows it; the web UI draws a table)."""
    lines = [f"models folder: {report['models_dir']}"]
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
