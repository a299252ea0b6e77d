"""Where cross-process lock files live: never where ``git add -A`` would commit them.

Writers of ``trust.json``, a registry and an audit log serialise through a lock
file (:mod:`filelock`). A lock file must stay where it is after release (one
that is deleted on release lets a waiting process and a newcomer lock two
different files at once), so its place matters: beside a tracked file in a git
work tree, ``git add -A`` would commit it. Inside a git work tree the lock
therefore lives under the repository's git directory
(``.git/sonic-registry/locks/``), which git never commits; elsewhere it is
``<file>.lock`` beside the file (ignore ``*.lock`` in another VCS).

The place depends only on where the locked file really is (never on the
current directory or ``$GIT_DIR``), so every process locking the same file
agrees on the same lock.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from filelock import FileLock

__all__ = ["file_lock", "lock_path", "nearest_git_dir"]


def nearest_git_dir(start: Path) -> Path | None:
    """The git directory of the work tree holding ``start`` (nearest ``.git``), else None.

    ``.git`` may be a file (worktrees, submodules) holding ``gitdir: <path>``.
    """
    here = start.resolve()
    for d in (here, *here.parents):
        dot = d / ".git"
        if dot.is_dir():
            return dot
        if dot.is_file():
            text = dot.read_text("utf-8", "replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text[len("gitdir:") :].strip())
                return target if target.is_absolute() else (d / target).resolve()
    return None


def lock_path(target: str | Path) -> Path:
    """The lock file that serialises writers of ``target`` (see the module docstring)."""
    real = Path(os.path.realpath(target))
    git = nearest_git_dir(real.parent)
    if git is None:
        return real.with_name(real.name + ".lock")
    tag = hashlib.sha256(str(real).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    locks = git / "sonic-registry" / "locks"
    try:
        locks.mkdir(parents=True, exist_ok=True)
    except OSError:  # a read-only git directory: beside the file after all
        return real.with_name(real.name + ".lock")
    return locks / f"{real.name}-{tag}.lock"


def file_lock(target: str | Path, timeout: float = -1) -> FileLock:
    """A :class:`filelock.FileLock` on :func:`lock_path` of ``target``."""
    from filelock import FileLock

    return FileLock(str(lock_path(target)), timeout=timeout)
