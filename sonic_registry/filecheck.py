"""The files of a bundle: which ones a signature covers, and do they match the signed digests.

:func:`check_files` is steps 6-8 of :func:`sonic_registry.bundle.verify_bundle`
(confinement and sizes, hashing, unlisted weight files); the pre-commit hook
calls it too, with its two shortcuts.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .confine import confined
from .constants import ENVELOPE_NAME, OMS_SIGNATURE_NAME
from .digest import (
    FileDigest,
    ShardedDigest,
    blake3_available,
    blake3_file,
    sharded_digests,
)
from .errors import (
    DigestMismatchError,
    SonicRegistryError,
    UnlistedFileError,
    UnsafePathError,
    VerificationError,
    digest_mismatch,
    size_mismatch,
)
from .formats import is_weight_file
from .hashing import SHARD_SIZE
from .prehash import Prehash

__all__ = [
    "SIGNATURE_NAMES",
    "OnMatch",
    "Progress",
    "Shortcut",
    "SubjectDigest",
    "check_files",
    "list_bundle_files",
]

#: Signatures over the bundle are not part of what they sign: our envelope,
#: and an OpenSSF model_signing signature carried beside it (`export-oms`).
SIGNATURE_NAMES = frozenset({ENVELOPE_NAME, OMS_SIGNATURE_NAME})

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class SubjectDigest:
    """A signed file: whole-file digest, size, and shard digests for large files."""

    sha256: str
    size: int
    shard_size: int = SHARD_SIZE
    shards: tuple[str, ...] = ()
    blake3: str | None = None  # signed only by `sign --blake3`; verify prefers it

    @property
    def file(self) -> FileDigest:
        return FileDigest(self.sha256, self.size)


def _is_skipped(rel: str) -> bool:
    return rel in SIGNATURE_NAMES or any(part.startswith(".") for part in rel.split("/"))


def list_bundle_files(root: Path) -> list[str]:
    """Every regular file a signature must cover, as sorted POSIX paths.

    Symlinks are followed only when they stay inside the root; anything else
    that is not a regular file (FIFO, device, socket) is refused outright.
    """
    real_root = os.path.realpath(root)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = os.path.relpath(dirpath, root)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for d in list(dirnames):
            full = os.path.join(dirpath, d)
            if os.path.islink(full):
                dirnames.remove(d)
                confined(root, real_root, os.path.normpath(os.path.join(rel_dir, d)))
        for name in sorted(filenames):
            rel = os.path.normpath(os.path.join(rel_dir, name)).replace(os.sep, "/")
            if _is_skipped(rel):
                continue
            confined(root, real_root, rel)
            out.append(rel)
    return sorted(out)


#: A hook-only fast path for one listed file: None = no opinion (hash it),
#: True = known to be the signed content, or the problem found. ``verify``
#: never passes one: it trusts no cache and no pointer, only the bytes.
Shortcut = Callable[[str, str, os.stat_result, SubjectDigest], "SonicRegistryError | bool | None"]
#: Called for each file whose bytes were hashed and matched (name, real path,
#: stat taken before hashing, signed digest), e.g. to fill a stat cache.
OnMatch = Callable[[str, str, os.stat_result, SubjectDigest], None]


def check_files(
    root: Path,
    subjects: Mapping[str, SubjectDigest],
    *,
    progress: Progress | None = None,
    threads: int | None = None,
    prefer_blake3: bool = True,
    shortcut: Shortcut | None = None,
    on_match: OnMatch | None = None,
    prehash: Prehash | None = None,
    strict: bool = False,
) -> tuple[list[SonicRegistryError], list[str]]:
    """Compare the files under ``root`` with the signed subjects: (problems, warnings).

    A hard-linked file (``st_nlink > 1``) is a warning, a problem when
    ``strict``: its bytes can change through a path outside the bundle.

    ``prehash``: digests started before the signatures were checked
    (:mod:`.prehash`); one counts only for the same real path, shard size and
    stat found here, and is compared with the signed digest like any other.
    """
    problems: list[SonicRegistryError] = []
    warnings: list[str] = []
    real_root = os.path.realpath(root)
    todo: list[tuple[str, str, os.stat_result]] = []  # (name, real path, stat before hashing)
    # Step 6: every listed path stays inside the root and is a regular file of
    # the signed size. Sizes are compared before any byte is hashed.
    for name, subject in sorted(subjects.items()):
        try:
            real = confined(root, real_root, name)
        except VerificationError as exc:
            problems.append(exc)
            continue
        st = os.stat(real)
        if st.st_nlink > 1:
            line = f"hard-linked ({st.st_nlink} names): another path can change these bytes"
            if strict:
                problems.append(UnsafePathError(name, f"{line} (refused under --strict)"))
                continue
            warnings.append(f"{name}: {line}")
        verdict = shortcut(name, real, st, subject) if shortcut is not None else None
        if verdict is True:
            continue
        if isinstance(verdict, SonicRegistryError):
            problems.append(verdict)
            continue
        if st.st_size != subject.size:
            problems.append(size_mismatch(name, subject.size, st.st_size))
            continue
        todo.append((name, real, st))  # hash the confined target itself, not the link

    # Step 7: hash what is left, in parallel. Files with a signed BLAKE3 digest
    # are checked with it when BLAKE3 is installed (a tree hash: one file uses
    # every core); the rest use signed SHA-256 shards for big files and
    # whole-file SHA-256 otherwise.
    # (blake3 is imported only when some subject has a BLAKE3 digest to check)
    use_b3 = prefer_blake3 and any(subjects[t[0]].blake3 for t in todo) and blake3_available()
    by_b3 = [t for t in todo if use_b3 and subjects[t[0]].blake3]
    by_sha = [t for t in todo if not (use_b3 and subjects[t[0]].blake3)]
    matched: list[tuple[str, str, os.stat_result]] = []
    for name, real, st in by_b3:
        want_b3 = subjects[name].blake3 or ""
        got_b3, _ = blake3_file(real, threads=threads, progress=progress)
        if got_b3 != want_b3:
            problems.append(digest_mismatch(name, "blake3", want_b3, got_b3))
        else:
            matched.append((name, real, st))
    digests = _sha256_digests(by_sha, subjects, threads, progress, prehash)
    for (name, real, st), got in zip(by_sha, digests, strict=True):
        problem = _compare(name, subjects[name], got)
        if problem is None:
            matched.append((name, real, st))
        else:
            problems.append(problem)
    if on_match is not None:
        for name, real, st in matched:
            on_match(name, real, st, subjects[name])

    # Step 8: no unlisted weight file may sit beside the signed ones (it could be
    # picked up by a loader by name); other unlisted files are only warned about.
    try:
        on_disk = list_bundle_files(root)
    except VerificationError as exc:
        if str(exc) not in {str(p) for p in problems}:  # a listed link out: said in step 6
            problems.append(exc)
        on_disk = []
    for name in on_disk:
        if name in subjects:
            continue
        if is_weight_file(root / name):
            problems.append(
                UnlistedFileError(
                    name,
                    "weight file is not listed in the signed manifest "
                    "(add it to release.toml and re-sign, or remove it)",
                )
            )
        else:
            warnings.append(f"{name}: not covered by the signature")
    return problems, warnings


def _sha256_digests(
    todo: Sequence[tuple[str, str, os.stat_result]],
    subjects: Mapping[str, SubjectDigest],
    threads: int | None,
    progress: Progress | None,
    prehash: Prehash | None,
) -> list[ShardedDigest]:
    """The SHA-256 (shard) digests of ``todo``: from ``prehash`` where it has them."""
    # a subject signed without shards is hashed whole, whatever its size
    sizes = [
        subjects[n].shard_size if subjects[n].shards else subjects[n].size + 1 for n, _, _ in todo
    ]
    # take() waits for the prehash; whatever it did not hash (or hashed for a
    # file since changed) is hashed here, in one parallel batch
    out: list[ShardedDigest | None] = [
        prehash.take(real, size, st) if prehash is not None else None
        for (_, real, st), size in zip(todo, sizes, strict=True)
    ]
    miss = [i for i, got in enumerate(out) if got is None]
    fresh = sharded_digests(
        [todo[i][1] for i in miss],
        shard_size=[sizes[i] for i in miss],
        whole=False,
        threads=threads,
        progress=progress,
    )
    for i, got in zip(miss, fresh, strict=True):
        out[i] = got
    return [got for got in out if got is not None]


def _compare(name: str, want: SubjectDigest, got: ShardedDigest) -> SonicRegistryError | None:
    """The mismatch between a signed subject and what was hashed, if any."""
    if want.shards:
        bad = [i for i, (a, b) in enumerate(zip(want.shards, got.shards, strict=False)) if a != b]
        if not bad and len(want.shards) == len(got.shards):
            return None
        first = bad[0] if bad else 0
        start = first * want.shard_size
        return DigestMismatchError(
            name,
            f"sha256: content differs from the signed file at bytes {start}.."
            f"{start + want.shard_size} (shard {first})",
        )
    if got.sha256 != want.sha256:
        return digest_mismatch(name, "sha256", want.sha256, got.sha256)
    return None
