"""``sonic-registry-hook no-pickle``: refuse pickle checkpoints, by content.

A pickle runs code when it is loaded, whatever its name says; ``.pth`` files
from ``torch.save`` are pickles (or zip archives holding one). The check reads
only the first bytes (:func:`sonic_registry.formats.sniff`) and never unpickles.
A Git LFS pointer is judged by its local object when git-lfs has fetched it,
otherwise by its name, since its content is not there to read.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from .repo import git_dir

__all__ = ["PICKLE_SUFFIXES", "no_pickle"]

#: Pickle-ish names: an LFS pointer under one of these is refused when its content is absent.
PICKLE_SUFFIXES = frozenset({".pth", ".pt", ".ckpt", ".pkl", ".pickle"})


def no_pickle(files: Iterable[str]) -> list[str]:
    """One ``path: problem`` line per pickle checkpoint among ``files``."""
    from ..formats import is_pickle_like, sniff
    from ..lfs import lfs_object_path, read_pointer

    gd = git_dir()
    out = []
    for f in files:
        if not os.path.isfile(f):
            continue
        try:
            kind = sniff(f)
            if kind == "lfs-pointer":
                pointer = read_pointer(f)
                local = lfs_object_path(gd, pointer.oid) if gd and pointer else None
                if local is not None:
                    kind = sniff(local)
                elif Path(f).suffix.lower() in PICKLE_SUFFIXES:
                    out.append(
                        f"{f}: LFS pointer to a {Path(f).suffix} checkpoint (content not "
                        "fetched; refused by name): commit safetensors instead "
                        "(`sonic-registry convert`)"
                    )
                    continue
        except (OSError, ValueError) as exc:
            out.append(f"{f}: cannot read: {exc}")
            continue
        if is_pickle_like(kind):
            target = Path(f).with_suffix(".safetensors").as_posix()
            out.append(
                f"{f}: pickle checkpoint ({kind}): loading it runs code; convert it with "
                f"`sonic-registry convert {f} {target}`"
            )
    return out
