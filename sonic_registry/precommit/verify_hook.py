"""``sonic-registry-hook verify``: every bundle of the repo matches its signed manifest.

The hook always checks *every* bundle, whichever files changed: a commit that
edits only ``release.toml``, ``release.dsse.json`` or the trust file, or
deletes a weight (pre-commit passes no file name for a deletion), must fail as
surely as one that edits a weight. The caches (:mod:`.cache`) keep that cheap.

The file checks are :func:`sonic_registry.bundle.check_files` (same steps,
same messages) given two shortcuts that only the hook takes; ``verify`` never
passes them, so it keeps no code path that trusts anything but bytes:

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

from ..constants import MAX_ENVELOPE_BYTES
from ..fileio import NotRegularFileError, open_regular
from .cache import Caches, snapshot, stat_key
from .repo import ENVELOPE_NAME, TOML_NAME, display, is_below

if TYPE_CHECKING:
    from ..bundle import SubjectDigest
    from ..digest import StatCache
    from ..errors import SonicRegistryError
    from ..trust import TrustStore
    from .trust_input import Trust

__all__ = ["verify_repo"]


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
        fd, _ = open_regular(root / ENVELOPE_NAME)  # never blocks on a FIFO
        with os.fdopen(fd, "rb") as fh:
            env_bytes = fh.read(MAX_ENVELOPE_BYTES + 1)  # a larger one is refused as malformed
    except FileNotFoundError:
        return [
            f"{display(root, TOML_NAME)}: expected a signed {ENVELOPE_NAME} beside it, found "
            f"none (run `sonic-registry sign {root.as_posix()} --key KEY`)"
        ]
    except NotRegularFileError as exc:
        return [f"{display(root, ENVELOPE_NAME)}: {exc.strerror}, expected a DSSE envelope"]
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
    """``bundle.check_files`` with the two shortcuts only the hook may take."""
    from ..bundle import check_files
    from ..digest import FileDigest
    from ..errors import DigestMismatchError, digest_mismatch
    from ..lfs import MAX_POINTER_SIZE, check_pointer, read_pointer

    def shortcut(
        name: str, real: str, st: os.stat_result, want: SubjectDigest
    ) -> SonicRegistryError | bool | None:
        # A Git LFS pointer stands for its content: its oid is the sha256.
        if st.st_size != want.size and st.st_size < MAX_POINTER_SIZE:
            try:
                pointer = read_pointer(real)
            except ValueError as exc:
                return DigestMismatchError(name, f"malformed LFS pointer: {exc}")
            if pointer is not None:
                return check_pointer(pointer, want.sha256, want.size, name=name) or True
            return None  # not a pointer: the ordinary size check reports it
        # An unchanged file (same size, mtime, ctime, inode) keeps its digest.
        cached = cache.get(real) if cache is not None else None
        if cached is None:
            return None
        return (
            True
            if cached.sha256 == want.sha256
            else digest_mismatch(name, "sha256", want.sha256, cached.sha256)
        )

    def remember(name: str, real: str, st: os.stat_result, want: SubjectDigest) -> None:
        # The bytes matched the signed digests (all shards, or the whole file),
        # so the signed whole-file digest is this file's: cache it unless the
        # file moved while it was being hashed.
        if cache is not None and stat_key(os.stat(real)) == stat_key(st):
            cache.put(real, FileDigest(want.sha256, want.size))

    problems, _warnings = check_files(root, subjects, shortcut=shortcut, on_match=remember)
    return problems


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
