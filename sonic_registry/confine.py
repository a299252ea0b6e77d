"""The one confinement rule for a bundle's files: inside the root, a regular file.

Shared by sign, verify, the speculative hashing that starts before the
signature is checked (:mod:`.prehash`) and the verified loader. Kept in a
module of its own with no heavy imports, so the verify path can use it before
it has loaded the signature code.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import DigestMismatchError, UnsafePathError

__all__ = ["confined", "path_in_bundle"]


def path_in_bundle(root: str | Path, rel: str) -> str:
    """The real path of ``rel`` under ``root``; links may not leave the root.

    The one confinement rule shared by sign, verify and the verified loader.
    """
    return confined(Path(root), os.path.realpath(root), rel)


def confined(root: Path, real_root: str, rel: str) -> str:
    """Resolve ``rel`` under ``root``; refuse escapes and non-regular files."""
    full = os.path.join(root, rel)
    real = os.path.realpath(full)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise UnsafePathError(rel, f"expected a path inside the bundle, found a link to {real}")
    try:
        st = os.stat(real)
    except FileNotFoundError as exc:
        raise DigestMismatchError(rel, "expected a file, found it missing") from exc
    if stat.S_ISDIR(st.st_mode):
        return real
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "FIFO"
            if stat.S_ISFIFO(st.st_mode)
            else "device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "socket"
            if stat.S_ISSOCK(st.st_mode)
            else "special file"
        )
        raise UnsafePathError(rel, f"expected a regular file, found a {kind}")
    return real
