"""Walk a model directory the way an OMS serialization describes it, then hash it.

model_signing's walk has known weak spots, each handled here on purpose:

* ``ignore_paths`` is signed, so whoever signs decides what is *not* verified.
  We honour it (the signer meant it), but refuse an ignore entry that hides a
  weight file, and report every ignored path, so "verified" never silently
  means "verified except the unet".
* Symlinks: with ``allow_symlinks`` model_signing hashes whatever a link points
  to, even outside the model, and skips the contents of linked directories.
  We follow a link only to a regular file inside the model root; anything else
  is an :class:`UnsafePathError`.
* Shards: a file of zero bytes has zero shards, so it leaves no trace in a
  shards-serialized signature and can be added after signing unnoticed. We
  report it as not covered instead of accepting it.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..digest import hash_files
from ..errors import (
    SonicRegistryError,
    UnlistedFileError,
    UnreadableInputError,
    UnsafePathError,
    UsageError,
    raise_all,
)
from ..formats import is_weight_file
from ..hashing import hash_range
from ..workpool import pool_map
from ._oms_format import GIT_PATHS, SINGLE_FILE, Serialization, shard_name

__all__ = [
    "MAX_RESOURCES",
    "ModelFile",
    "ModelTree",
    "compute_digests",
    "expected_names",
    "names_for",
    "resource_count",
    "scan",
]


@dataclass(frozen=True)
class ModelFile:
    """A file of the model: its name in the signature and where its bytes are read."""

    name: str
    path: Path
    size: int
    via_symlink: bool = False


@dataclass(frozen=True)
class ModelTree:
    files: tuple[ModelFile, ...]
    #: ignored entries, as names (directories end in "/")
    ignored: tuple[str, ...]


def _matches(name: str, patterns: Sequence[str]) -> str | None:
    """The ignore entry covering ``name`` (lexical prefix by whole path parts), if any."""
    for p in patterns:
        if name == p or name.startswith(p + "/"):
            return p
    return None


def _weights_under(path: Path) -> list[Path]:
    if path.is_symlink() or path.is_file():
        return [path] if path.is_file() and is_weight_file(path) else []
    found = []
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            p = Path(dirpath, f)
            if not p.is_symlink() and is_weight_file(p):
                found.append(p)
    return found


def scan(
    root: Path,
    serialization: Serialization,
    *,
    implicit_ignores: Sequence[str] = (),
    user_ignores: Sequence[str] = (),
) -> ModelTree:
    """Every file the serialization covers, plus what it leaves out.

    ``implicit_ignores`` are left out without the weight check: the git paths
    model_signing always skips, and the signature file itself. ``user_ignores``
    (``--ignore-paths``) get the same weight check as the signed ignore_paths.
    A model that is a single file is that file, named ``.`` as model_signing does.
    """
    if root.is_file() and not root.is_symlink():
        return ModelTree((ModelFile(SINGLE_FILE, root, root.stat().st_size),), ())
    if not root.is_dir():
        raise UnreadableInputError(str(root), "expected a model directory or file")
    real_root = Path(os.path.realpath(root))
    declared = list(dict.fromkeys([*serialization.ignore_paths, *user_ignores]))
    implicit = [p for p in implicit_ignores if p not in declared]
    errors: list[SonicRegistryError] = []
    files: list[ModelFile] = []
    ignored: list[str] = []

    # Step 1: ignore entries (signed, or given to the verifier) must not hide weights.
    for entry in declared:
        if entry in GIT_PATHS:
            continue  # .git holds LFS objects that look like weights; model_signing skips it
        source = "ignore_paths" if entry in serialization.ignore_paths else "--ignore-paths"
        for weight in _weights_under(real_root / entry):
            rel = weight.relative_to(real_root).as_posix()
            errors.append(
                UnlistedFileError(
                    rel,
                    f"weight file excluded from the signature by {source} entry {entry!r}; "
                    "a weight file must be signed",
                )
            )

    # Step 2: walk without following links; decide about each entry explicitly.
    def walk(directory: Path, prefix: str) -> None:
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError as exc:
            errors.append(UnreadableInputError(prefix or str(root), f"cannot list: {exc.strerror}"))
            return
        for entry in entries:
            name = f"{prefix}{entry.name}"
            st = entry.stat(follow_symlinks=False)
            if _matches(name, declared + implicit) is not None:
                ignored.append(name + "/" if stat.S_ISDIR(st.st_mode) else name)
                continue
            if stat.S_ISDIR(st.st_mode):
                walk(Path(entry.path), name + "/")
            elif stat.S_ISREG(st.st_mode):
                files.append(ModelFile(name, Path(entry.path), st.st_size))
            elif stat.S_ISLNK(st.st_mode):
                linked = _follow(Path(entry.path), name, real_root, serialization, errors)
                if linked is not None:
                    files.append(linked)
            else:
                errors.append(
                    UnsafePathError(
                        name, "expected a regular file or directory, found a special file"
                    )
                )

    walk(root, "")
    raise_all(errors)
    return ModelTree(tuple(files), tuple(ignored))


def _follow(
    link: Path,
    name: str,
    real_root: Path,
    serialization: Serialization,
    errors: list[SonicRegistryError],
) -> ModelFile | None:
    if not serialization.allow_symlinks:
        errors.append(
            UnsafePathError(name, "is a symlink, and the serialization has allow_symlinks false")
        )
        return None
    target = Path(os.path.realpath(link))
    if target != real_root and real_root not in target.parents:
        errors.append(UnsafePathError(name, f"symlink points outside the model, to {target}"))
        return None
    try:
        st = target.stat()
    except OSError:
        errors.append(UnsafePathError(name, "dangling symlink"))
        return None
    if stat.S_ISDIR(st.st_mode):
        # model_signing does not descend into linked directories, so their
        # files would be silently unverified.
        errors.append(
            UnsafePathError(name, "symlink to a directory; its files would go unverified")
        )
        return None
    if not stat.S_ISREG(st.st_mode):
        errors.append(UnsafePathError(name, "symlink to a special file"))
        return None
    return ModelFile(name, target, st.st_size, via_symlink=True)


#: Most resources one signature may name; a 1 TB model at model_signing's 1 GB
#: default is 1,000. Keeps a tiny shard_size from exhausting memory.
MAX_RESOURCES = 1_000_000


def resource_count(f: ModelFile, serialization: Serialization) -> int:
    """How many resources the serialization makes of ``f`` (0 for an empty file in shards)."""
    if serialization.method == "files":
        return 1
    step = serialization.shard_size
    assert step is not None  # guaranteed by Serialization.from_dict
    return -(-f.size // step)


def names_for(f: ModelFile, serialization: Serialization) -> list[str]:
    """The resource names of one file, as the serialization computes them."""
    if serialization.method == "files":
        return [f.name]
    step = serialization.shard_size
    assert step is not None
    return [shard_name(f.name, a, min(a + step, f.size)) for a in range(0, f.size, step)]


def expected_names(tree: ModelTree, serialization: Serialization) -> dict[str, ModelFile]:
    """Resource name -> file for the whole tree (export; bounded by ``MAX_RESOURCES``)."""
    total = sum(resource_count(f, serialization) for f in tree.files)
    if total > MAX_RESOURCES:
        raise UsageError(
            "--shard-size",
            f"{total} shards exceed the limit of {MAX_RESOURCES}: choose a larger shard size",
        )
    return {n: f for f in tree.files for n in names_for(f, serialization)}


def compute_digests(
    names: dict[str, ModelFile],
    serialization: Serialization,
    *,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, str]:
    """sha256 hex of every named resource, hashed on a thread pool."""
    if serialization.method == "files":
        order = list(names)
        digests = hash_files([names[n].path for n in order], threads=threads, progress=progress)
        return {n: d.sha256 for n, d in zip(order, digests, strict=True)}

    def one(name: str) -> tuple[str, str]:
        _path, start, end = name.rsplit(":", 2)
        s, e = int(start), int(end)
        hexdigest, n = hash_range(names[name].path, s, e - s, progress=progress)
        if n != e - s:
            raise UnreadableInputError(names[name].name, "file shrank while being hashed")
        return name, hexdigest

    return dict(pool_map(one, list(names), threads))
