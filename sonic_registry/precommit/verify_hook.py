"""``sonic-registry-hook verify``: every bundle of the repo matches its signed manifest.

The hook always checks *every* bundle, whichever files changed: a commit that
edits only ``release.toml``, ``release.dsse.json`` or the trust file, or
deletes a weight (pre-commit passes no file name for a deletion), must fail as
surely as one that edits a weight. The caches (:mod:`.cache`) keep that cheap.

The file checks mirror :func:`sonic_registry.bundle.verify_bundle` (same
steps, same messages) with two shortcuts that only the hook may take, so they
live here and ``verify`` keeps no code path that trusts anything but bytes:

* a stat-cache hit stands for the file's digest;
* a Git LFS pointer in the work tree is compared to the signed digest and
  size (its oid *is* the content's sha256) instead of being hashed.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import Caches, snapshot, stat_key
from .repo import ENVELOPE_NAME, TOML_NAME, display, is_below

if TYPE_CHECKING:
    from ..bundle import SubjectDigest
    from ..digest import StatCache
    from ..errors import SonicRegistryError
    from ..trust import TrustStore
    from .trust_input import Trust

__all__ = ["verify_repo"]

#: == signing.MAX_ENVELOPE_BYTES (not imported from there: warm path).
MAX_ENVELOPE_BYTES = 64 << 20


class _Run:
    """One hook run: the trust input, loaded at most once and only on a cache miss."""

    def __init__(self, trust: Trust, caches: Caches) -> None:
        self.trust = trust
        self.caches = caches
        self.trust_fp = trust.fingerprint()
        self._store: TrustStore | None = None

    def store(self) -> TrustStore:
        if self._store is None:
            self._store = self.trust.load()
        return self._store


def verify_repo(
    bundles: Iterable[Path],
    trust: Trust,
    *,
    caches: Caches | None = None,
    loose: Iterable[str] = (),
) -> list[str]:
    """Check every bundle, and that no weight in ``loose`` lies outside them; problem lines."""
    run = _Run(trust, caches or Caches())
    roots = list(bundles)
    problems: list[str] = []
    for root in roots:
        problems += _verify_one(root, run)
    problems += _loose_weights(loose, roots)
    run.caches.save()
    return problems


def _verify_one(root: Path, run: _Run) -> list[str]:
    try:
        with open(root / ENVELOPE_NAME, "rb") as fh:
            env_bytes = fh.read(MAX_ENVELOPE_BYTES + 1)  # a larger one is refused as malformed
    except FileNotFoundError:
        return [
            f"{display(root, TOML_NAME)}: expected a signed {ENVELOPE_NAME} beside it, found "
            f"none (run `sonic-registry sign {root.as_posix()} --key KEY`)"
        ]
    except OSError as exc:
        return [f"{display(root, ENVELOPE_NAME)}: cannot read: {exc.strerror}"]
    env_sha = hashlib.sha256(env_bytes).hexdigest()
    snap = snapshot(root)
    verdicts = run.caches.verdicts
    if (
        verdicts is not None
        and snap is not None
        and verdicts.passes(root, env_sha, run.trust_fp, snap)
    ):
        return []  # the warm path: nothing that decided the last pass has changed

    problems, until = _full_check(root, env_bytes, run)
    if verdicts is not None:
        # Record only a pass whose files did not move while they were checked.
        if problems or snap is None or snapshot(root) != snap:
            verdicts.forget(root)
        else:
            verdicts.record(root, env_sha, run.trust_fp, until, snap)
    return problems


def _lines(root: Path, errors: Iterable[SonicRegistryError]) -> list[str]:
    """Library errors about files of ``root`` as repo-relative ``path: problem`` lines."""
    return [f"{display(root, e.where)}: {e.detail}" if e.where else e.detail for e in errors]


def _full_check(root: Path, env_bytes: bytes, run: _Run) -> tuple[list[str], float]:
    """Signatures and trust, then every file; returns (problem lines, verdict valid until)."""
    from ..bundle import verify_envelope
    from ..errors import SonicRegistryError
    from ..manifest import parse_time
    from ..signing import Envelope

    where = display(root, ENVELOPE_NAME)
    store = run.store()  # an unreadable trust input is a usage error (exit 2), raised here
    try:
        envelope = Envelope.from_json(env_bytes, where=where)
        statement = verify_envelope(envelope, store, where=where)
    except SonicRegistryError as exc:  # a bad committed envelope is a bad file (exit 1)
        return [str(p) for p in exc.problems], 0.0
    # The verdict holds until the release or any trusted key expires, whichever is first.
    expiries = [statement.release.expires]
    expiries += [k.expires for k in store.keys.values() if k.expires]
    until = min(parse_time(e).timestamp() for e in expiries)
    return _lines(root, _check_files(root, statement.subjects, run.caches.stats)), until


def _check_files(
    root: Path, subjects: Mapping[str, SubjectDigest], cache: StatCache | None
) -> list[SonicRegistryError]:
    from ..bundle import _confined, list_bundle_files
    from ..digest import FileDigest, sharded_digests
    from ..errors import DigestMismatchError, UnlistedFileError, VerificationError
    from ..formats import is_weight_file
    from ..lfs import MAX_POINTER_SIZE, check_pointer, read_pointer

    problems: list[SonicRegistryError] = []
    real_root = os.path.realpath(root)
    misses: list[tuple[str, str, os.stat_result]] = []  # (name, real path, stat before hashing)

    # Step 1 (bundle step 6): each listed path is a regular file inside the root
    # of the signed size -- or an LFS pointer to the signed content.
    for name, want in sorted(subjects.items()):
        try:
            real = _confined(root, real_root, name)
        except VerificationError as exc:
            problems.append(exc)
            continue
        st = os.stat(real)
        if st.st_size != want.size and st.st_size < MAX_POINTER_SIZE:
            try:
                pointer = read_pointer(real)
            except ValueError as exc:
                problems.append(DigestMismatchError(name, f"malformed LFS pointer: {exc}"))
                continue
            if pointer is not None:
                mismatch = check_pointer(pointer, want.sha256, want.size, name=name)
                problems += [mismatch] if mismatch is not None else []
                continue
        if st.st_size != want.size:
            problems.append(
                DigestMismatchError(name, f"size: expected {want.size} bytes, found {st.st_size}")
            )
            continue
        # Step 2: an unchanged file (same size, mtime, ctime, inode) keeps its digest.
        cached = cache.get(real) if cache is not None else None
        if cached is None:
            misses.append((name, real, st))
        elif cached.sha256 != want.sha256:
            problems.append(_sha_mismatch(name, want.sha256, cached.sha256))

    # Step 3 (bundle step 7): hash the misses in parallel, by signed shards for big files.
    digests = sharded_digests(
        [real for _, real, _ in misses],
        shard_size=[
            subjects[n].shard_size if subjects[n].shards else st.st_size + 1 for n, _, st in misses
        ],
        whole=False,
    )
    for (name, real, st), got in zip(misses, digests, strict=True):
        want = subjects[name]
        if want.shards:
            bad = [
                i for i, (a, b) in enumerate(zip(want.shards, got.shards, strict=False)) if a != b
            ]
            if bad or len(want.shards) != len(got.shards):
                start = bad[0] * want.shard_size if bad else 0
                problems.append(
                    DigestMismatchError(
                        name,
                        f"sha256: content differs from the signed file at bytes {start}.."
                        f"{start + want.shard_size} (shard {bad[0] if bad else 0})",
                    )
                )
                continue
            # Every shard matches, so the file is the signed one and its whole-file
            # digest is the signed digest: cached without a second pass over the bytes.
        elif got.sha256 != want.sha256:
            problems.append(_sha_mismatch(name, want.sha256, got.sha256))
            continue
        if cache is not None and stat_key(os.stat(real)) == stat_key(st):
            cache.put(real, FileDigest(want.sha256, want.size))

    # Step 4 (bundle step 8): no unlisted weight beside the signed ones.
    try:
        on_disk = list_bundle_files(root)
    except VerificationError as exc:
        return [*problems, exc]
    for name in on_disk:
        if name not in subjects and is_weight_file(root / name):
            problems.append(
                UnlistedFileError(
                    name,
                    "weight file is not listed in the signed manifest "
                    "(add it to release.toml and re-sign, or remove it)",
                )
            )
    return problems


def _sha_mismatch(name: str, want: str, got: str) -> SonicRegistryError:
    from ..errors import DigestMismatchError

    return DigestMismatchError(name, f"sha256: expected {want[:16]}..., found {got[:16]}...")


def _loose_weights(files: Iterable[str], roots: Sequence[Path]) -> list[str]:
    """Changed weight files that lie in no bundle at all: nothing signed vouches for them."""
    files = [f for f in files if not is_below(f, roots) and os.path.isfile(f)]
    if not files:
        return []
    from ..formats import is_weight_file

    return [
        f"{f}: weight file outside any signed bundle (no release.dsse.json above it)"
        for f in files
        if is_weight_file(f)
    ]
