"""Where things are in the repository: its git directory, its files, its bundles.

Nothing here spawns more than one ``git ls-files``: the hook's warm path must
stay in the tens of milliseconds.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ..constants import ENVELOPE_NAME, TOML_NAME
from ..locks import nearest_git_dir

__all__ = [
    "ENVELOPE_NAME",
    "TOML_NAME",
    "default_cache_dir",
    "display",
    "find_bundles",
    "git_dir",
    "is_below",
    "repo_files",
]


def git_dir(start: Path | None = None) -> Path | None:
    """The repository's git directory without spawning git (``$GIT_DIR`` or the nearest ``.git``).

    ``.git`` may be a file (worktrees, submodules) holding ``gitdir: <path>``.
    """
    env = os.environ.get("GIT_DIR")
    if env:
        return Path(env).resolve()
    return nearest_git_dir(start or Path.cwd())


def default_cache_dir() -> Path:
    """``$GIT_DIR/sonic-registry``, or ``.cache/sonic-registry`` outside a git repository."""
    found = git_dir()
    return found / "sonic-registry" if found else Path(".cache") / "sonic-registry"


def repo_files(under: Sequence[Path] = (Path("."),)) -> list[str]:
    """Tracked and untracked (not ignored) files below ``under``, relative to the cwd.

    ``git ls-files`` respects .gitignore and is fast on big trees; outside a
    git work tree, a walk that skips dot directories.
    """
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *under],
            capture_output=True,
            check=True,
        ).stdout
        return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]
    except (OSError, subprocess.CalledProcessError):
        pass
    names: list[str] = []
    for top in under:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            names.extend(os.path.join(dirpath, f) for f in filenames)
    return names


def find_bundles(under: Sequence[Path] = (Path("."),)) -> list[Path]:
    """Every directory holding a ``release.dsse.json`` or a ``release.toml``, sorted.

    Dot directories are never bundles of their own (``.git``, caches), as in
    :func:`sonic_registry.bundle.list_bundle_files`.
    """
    roots = {
        os.path.normpath(os.path.dirname(n) or ".")
        for n in repo_files(under)
        if os.path.basename(n) in (ENVELOPE_NAME, TOML_NAME)
        and not any(part.startswith(".") and part not in (".", "..") for part in Path(n).parts)
    }
    return [Path(r) for r in sorted(roots)]


def display(root: Path, name: str) -> str:
    """``name`` (relative to bundle ``root``) as the user sees it: relative to the repo."""
    return name if str(root) in ("", ".") else f"{root.as_posix()}/{name}"


def is_below(path: str | Path, dirs: Sequence[str | Path]) -> bool:
    """True when ``path`` is ``dirs[i]`` itself or inside one of them (links resolved)."""
    real = os.path.realpath(path)
    for d in dirs:
        base = os.path.realpath(d)
        if real == base or real.startswith(base.rstrip(os.sep) + os.sep):
            return True
    return False
