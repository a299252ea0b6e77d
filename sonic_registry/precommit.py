"""pre-commit hooks for model repositories: ``sonic-registry-hook verify|no-pickle|workflows``.

Each hook follows the pre-commit-hooks conventions: silent and exit 0 when
clean, one ``path: problem`` line per bad file on stdout and exit 1 otherwise,
exit 2 (one line on stderr) for usage errors such as a missing trust file.

``verify`` always checks *every* bundle of the repository, whichever files
changed: a commit that edits only ``release.toml``, ``release.dsse.json`` or
the trust file must fail as surely as one that edits a weight, and a hook that
only looks at the changed files would skip those (or a deletion, for which
pre-commit passes no file name at all). What keeps that cheap is two caches
under ``$GIT_DIR/sonic-registry/``, both trusted only by this hook, never by
``sonic-registry verify``:

* a :class:`~sonic_registry.digest.StatCache` (path + size + mtime + ctime +
  inode -> sha256), so a changed bundle re-hashes only its changed files;
* a *verdict* per bundle: the sha256 of the envelope and of the trust input,
  the stat key of every file in the bundle, and the time until which the
  verdict holds (earliest expiry of the release and of any trusted key). When
  all of that is unchanged the bundle passed before and nothing that decided
  it has changed, so the hook answers without importing the verifier at all
  (``cryptography``, ``jsonschema`` and ``packaging`` stay unloaded): an
  unchanged multi-GB repository is checked in a few tens of milliseconds.

A stale entry can never let a changed file pass: ``ctime`` is in every key and
no user can set it, and entries whose times are within the stat cache's racy
window of "now" are never stored (see :class:`~sonic_registry.digest.StatCache`).

Files tracked with Git LFS that are only pointers in the working tree are
checked without their content: the pointer's oid and size must equal the
signed sha256 and size (:mod:`sonic_registry.lfs`).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from .bundle import SubjectDigest
    from .digest import StatCache
    from .errors import SonicRegistryError
    from .trust import TrustStore

__all__ = [
    "HookUsageError",
    "Trust",
    "find_bundles",
    "find_workflows",
    "is_workflow",
    "main",
    "no_pickle",
    "verify_repo",
    "workflows",
]

ENVELOPE_NAME = "release.dsse.json"  # == bundle.ENVELOPE_NAME (not imported: warm path)
TOML_NAME = "release.toml"
#: Pickle-ish names: an LFS pointer under one of these is refused when its content is absent.
PICKLE_SUFFIXES = frozenset({".pth", ".pt", ".ckpt", ".pkl", ".pickle"})
#: Bumped whenever the verdict format or the meaning of a verdict changes.
VERDICT_VERSION = 1
RACY_SECONDS = 2.0  # == digest.StatCache.RACY_SECONDS (not imported: warm path)


class HookUsageError(Exception):
    """The hook cannot run as configured (exit 2)."""


# --- where things are -----------------------------------------------------------


def git_dir(start: Path | None = None) -> Path | None:
    """The repository's git directory without spawning git (``$GIT_DIR`` or the nearest ``.git``).

    ``.git`` may be a file (worktrees, submodules) holding ``gitdir: <path>``.
    """
    env = os.environ.get("GIT_DIR")
    if env:
        return Path(env).resolve()
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        dot = d / ".git"
        if dot.is_dir():
            return dot
        if dot.is_file():
            text = dot.read_text("utf-8", "replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text[len("gitdir:") :].strip())
                return (d / target).resolve() if not target.is_absolute() else target
    return None


def default_cache_dir() -> Path:
    found = git_dir()
    return found / "sonic-registry" if found else Path(".cache") / "sonic-registry"


def _git_files(under: Sequence[Path]) -> list[str] | None:
    """Tracked and untracked (not ignored) files below ``under``; None outside a work tree."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *under],
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def find_bundles(under: Sequence[Path] = (Path("."),)) -> list[Path]:
    """Every directory holding a ``release.dsse.json`` or a ``release.toml``, sorted.

    Uses ``git ls-files`` (respects .gitignore, fast on big trees) inside a git
    work tree and a directory walk elsewhere. Dot directories are never bundles
    of their own (``.git``, caches), as in :func:`bundle.list_bundle_files`.
    """
    names = _git_files(under)
    if names is None:
        names = []
        for top in under:
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                names.extend(os.path.join(dirpath, f) for f in filenames)
    roots = {
        os.path.normpath(os.path.dirname(n) or ".")
        for n in names
        if os.path.basename(n) in (ENVELOPE_NAME, TOML_NAME)
        and not any(part.startswith(".") and part not in (".", "..") for part in Path(n).parts)
    }
    return [Path(r) for r in sorted(roots)]


def _display(root: Path, name: str) -> str:
    return name if str(root) in ("", ".") else f"{root.as_posix()}/{name}"


# --- trust input ------------------------------------------------------------------


class Trust(NamedTuple):
    """The hook's trust input: a trust.json in the repo and/or pinned public keys.

    A NamedTuple rather than a frozen dataclass: ``dataclasses`` (with
    ``inspect``) is the largest import left on the warm path.
    """

    trust_path: Path | None = None
    public_keys: tuple[Path, ...] = ()

    def fingerprint(self) -> str:
        """sha256 over every trust input file, so any edit to them invalidates verdicts."""
        h = hashlib.sha256()
        for p in [self.trust_path, *self.public_keys]:
            if p is None:
                continue
            try:
                data = p.read_bytes()
            except OSError as exc:
                raise HookUsageError(f"{p}: cannot read the trust input: {exc.strerror}") from exc
            h.update(str(p).encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()

    def load(self) -> TrustStore:
        from .signing import load_public_key
        from .trust import TrustStore

        store = TrustStore.load(self.trust_path) if self.trust_path else TrustStore()
        return store.with_pinned(load_public_key(p) for p in self.public_keys)


# --- the verdict cache ------------------------------------------------------------

StatKey = list[int]


def _stat_key(st: os.stat_result) -> StatKey:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def snapshot(root: Path) -> dict[str, StatKey] | None:
    """Stat key of every file a bundle check looks at; None if anything is not a plain file.

    Walks exactly what :func:`bundle.list_bundle_files` walks (dot entries
    skipped) plus the envelope. Links and special files make the snapshot
    unusable, so bundles containing them always take the full path.
    """
    out: dict[str, StatKey] = {}
    stack = [(root, "")]
    while stack:
        directory, prefix = stack.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_symlink():
                return None
            rel = prefix + entry.name
            if entry.is_dir(follow_symlinks=False):
                stack.append((Path(entry.path), rel + "/"))
            elif entry.is_file(follow_symlinks=False):
                out[rel] = _stat_key(entry.stat(follow_symlinks=False))
            else:
                return None
    return out


def _is_racy(snap: Mapping[str, StatKey], now: float) -> bool:
    """A file touched within the clock's granularity of now could change unseen."""
    return any(now - max(k[1], k[2]) / 1e9 < RACY_SECONDS for k in snap.values())


class VerdictCache:
    """bundle path -> (envelope sha256, trust fingerprint, valid-until, file stat keys)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._dirty = False
        self._entries: dict[str, Any] = {}
        try:
            data = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError):
            return
        if isinstance(data, dict) and data.get("version") == VERDICT_VERSION:
            entries = data.get("bundles")
            if isinstance(entries, dict):
                self._entries = entries

    def passes(
        self, root: Path, envelope_sha: str, trust_fp: str, snap: Mapping[str, StatKey]
    ) -> bool:
        entry = self._entries.get(os.path.realpath(root))
        return (
            isinstance(entry, dict)
            and entry.get("envelope") == envelope_sha
            and entry.get("trust") == trust_fp
            and isinstance(entry.get("until"), int | float)
            and time.time() < entry["until"]
            and entry.get("files") == snap
        )

    def record(
        self,
        root: Path,
        envelope_sha: str,
        trust_fp: str,
        until: float,
        snap: Mapping[str, StatKey],
    ) -> None:
        if _is_racy(snap, time.time()):
            return
        self._entries[os.path.realpath(root)] = {
            "envelope": envelope_sha,
            "trust": trust_fp,
            "until": until,
            "files": dict(snap),
        }
        self._dirty = True

    def forget(self, root: Path) -> None:
        if self._entries.pop(os.path.realpath(root), None) is not None:
            self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        from .fileio import atomic_write_bytes

        data = json.dumps({"version": VERDICT_VERSION, "bundles": self._entries}).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(self.path, data)
        except OSError:
            return  # a cache that cannot be written is simply not kept
        self._dirty = False


class Caches:
    """The hook's two caches (none with ``--no-cache``); the stat cache loads on first use.

    The warm path needs only the verdicts, so the stat cache (and the digest
    module behind it) is not even imported when every bundle is unchanged.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory
        self.verdicts = VerdictCache(directory / "verdicts.json") if directory else None
        self._stats: StatCache | None = None

    @property
    def stats(self) -> StatCache | None:
        if self._stats is None and self.directory is not None:
            from .digest import StatCache

            self._stats = StatCache(self.directory / "statcache.json")
        return self._stats

    def save(self) -> None:
        if self.verdicts is not None:
            self.verdicts.save()
        if self._stats is not None:
            self._stats.save()


# --- verify -----------------------------------------------------------------------


class _Context:
    """One hook run: its trust input (loaded at most once, and only on a cache miss)."""

    def __init__(self, trust: Trust, caches: Caches, trust_fp: str) -> None:
        self.trust = trust
        self.caches = caches
        self.trust_fp = trust_fp
        self.store: TrustStore | None = None

    def trust_store(self) -> TrustStore:
        if self.store is None:
            self.store = self.trust.load()
        return self.store


def _lines(exc: SonicRegistryError) -> list[str]:
    return [str(p) for p in exc.problems]


def verify_repo(
    bundles: Iterable[Path],
    trust: Trust,
    *,
    caches: Caches | None = None,
    loose: Iterable[str] = (),
) -> list[str]:
    """Check every bundle (and that no weight in ``loose`` lies outside them); problem lines."""
    ctx = _Context(trust, caches or Caches(), trust.fingerprint())
    problems: list[str] = []
    roots = list(bundles)
    for root in roots:
        problems += _verify_one(root, ctx)
    problems += _loose_weights(loose, roots)
    ctx.caches.save()
    return problems


def _verify_one(root: Path, ctx: _Context) -> list[str]:
    env_path = root / ENVELOPE_NAME
    try:
        env_bytes = env_path.read_bytes()
    except FileNotFoundError:
        return [
            f"{_display(root, TOML_NAME)}: expected a signed {ENVELOPE_NAME} beside it, found "
            f"none (run `sonic-registry sign {root.as_posix()} --key KEY`)"
        ]
    except OSError as exc:
        return [f"{_display(root, ENVELOPE_NAME)}: cannot read: {exc.strerror}"]
    env_sha = hashlib.sha256(env_bytes).hexdigest()
    snap_before = snapshot(root)
    verdicts = ctx.caches.verdicts
    if (
        verdicts is not None
        and snap_before is not None
        and verdicts.passes(root, env_sha, ctx.trust_fp, snap_before)
    ):
        return []  # the warm path: nothing that decided the last pass has changed

    problems, until = _full_check(root, env_bytes, ctx)
    if verdicts is not None:
        if problems or snap_before is None or snapshot(root) != snap_before:
            verdicts.forget(root)
        else:
            verdicts.record(root, env_sha, ctx.trust_fp, until, snap_before)
    return problems


def _full_check(root: Path, env_bytes: bytes, ctx: _Context) -> tuple[list[str], float]:
    """Signature, trust and every file (through the stat cache); returns (lines, valid-until)."""
    from .bundle import verify_envelope
    from .errors import SonicRegistryError
    from .manifest import parse_time
    from .signing import Envelope

    where = _display(root, ENVELOPE_NAME)
    store = ctx.trust_store()  # an unreadable trust input is a usage error (exit 2)
    try:
        envelope = Envelope.from_json(env_bytes, where=where)
        statement = verify_envelope(envelope, store, where=where)
    except SonicRegistryError as exc:  # a bad committed envelope is a bad file (exit 1)
        return _lines(exc), 0.0
    # The verdict holds until the release or any trusted key expires, whichever is first.
    expiries = [statement.release.expires]
    expiries += [k.expires for k in store.keys.values() if k.expires]
    until = min(parse_time(e).timestamp() for e in expiries)
    return _check_files(root, statement.subjects, ctx.caches.stats), until


def _check_files(
    root: Path, subjects: Mapping[str, SubjectDigest], cache: StatCache | None
) -> list[str]:
    from .bundle import _confined, list_bundle_files
    from .digest import FileDigest, sharded_digests
    from .errors import VerificationError
    from .formats import is_weight_file
    from .lfs import MAX_POINTER_SIZE, check_pointer, read_pointer

    problems: list[str] = []
    real_root = os.path.realpath(root)
    misses: list[tuple[str, str, os.stat_result]] = []  # (name, real path, stat before hashing)
    for name, want in sorted(subjects.items()):
        shown = _display(root, name)
        try:
            real = _confined(root, real_root, name)
            st = os.stat(real)
        except VerificationError as exc:
            problems.append(f"{_display(root, exc.where)}: {exc.detail}")
            continue
        if st.st_size != want.size and st.st_size < MAX_POINTER_SIZE:
            try:
                pointer = read_pointer(real)
            except ValueError as exc:
                problems.append(f"{shown}: malformed LFS pointer: {exc}")
                continue
            if pointer is not None:
                mismatch = check_pointer(pointer, want.sha256, want.size, name=shown)
                if mismatch is not None:
                    problems.append(str(mismatch))
                continue
        if st.st_size != want.size:
            problems.append(f"{shown}: size: expected {want.size} bytes, found {st.st_size}")
            continue
        cached = cache.get(real) if cache is not None else None
        if cached is not None:
            if cached.sha256 != want.sha256:
                problems.append(
                    f"{shown}: sha256: expected {want.sha256[:16]}..., "
                    f"found {cached.sha256[:16]}..."
                )
            continue
        misses.append((name, real, st))

    digests = sharded_digests(
        [m[1] for m in misses],
        shard_size=[
            subjects[n].shard_size if subjects[n].shards else st.st_size + 1 for n, _, st in misses
        ],
        whole=False,
    )
    for (name, real, st), got in zip(misses, digests, strict=True):
        want = subjects[name]
        shown = _display(root, name)
        if want.shards:
            bad = [
                i for i, (a, b) in enumerate(zip(want.shards, got.shards, strict=False)) if a != b
            ]
            if bad or len(want.shards) != len(got.shards):
                first = bad[0] if bad else 0
                problems.append(
                    f"{shown}: sha256: content differs from the signed file in shard {first} "
                    f"(bytes {first * want.shard_size}..{(first + 1) * want.shard_size})"
                )
                continue
            # Every shard matches, so the whole file is the signed one: its whole-file
            # digest is the signed digest (no second pass over the bytes needed).
        elif got.sha256 != want.sha256:
            problems.append(
                f"{shown}: sha256: expected {want.sha256[:16]}..., found {got.sha256[:16]}..."
            )
            continue
        if cache is not None and _stat_key(os.stat(real)) == _stat_key(st):
            cache.put(real, FileDigest(want.sha256, want.size))

    # No unlisted weight may sit beside the signed ones (a loader could pick it up).
    try:
        on_disk = list_bundle_files(root)
    except VerificationError as exc:
        return [*problems, f"{_display(root, exc.where)}: {exc.detail}"]
    for name in on_disk:
        if name not in subjects and is_weight_file(root / name):
            problems.append(
                f"{_display(root, name)}: weight file is not listed in the signed manifest "
                "(add it to release.toml and re-sign, or remove it)"
            )
    return problems


def _loose_weights(files: Iterable[str], roots: Sequence[Path]) -> list[str]:
    """Changed weight files that lie in no bundle at all: nothing signed vouches for them."""
    files = list(files)
    if not files:
        return []
    from .formats import is_weight_file

    bases = [os.path.realpath(r) for r in roots]
    out = []
    for f in files:
        real = os.path.realpath(f)
        inside = any(real == b or real.startswith(b.rstrip(os.sep) + os.sep) for b in bases)
        if not inside and os.path.isfile(f) and is_weight_file(f):
            out.append(
                f"{f}: weight file outside any signed bundle (no release.dsse.json above it)"
            )
    return out


# --- no-pickle --------------------------------------------------------------------


def no_pickle(files: Iterable[str]) -> list[str]:
    """One line per pickle checkpoint (by content; LFS pointers by their local object or name)."""
    from .formats import is_pickle_like, sniff
    from .lfs import lfs_object_path, read_pointer

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


# --- workflows --------------------------------------------------------------------


def is_workflow(path: str | Path) -> bool:
    """A ComfyUI workflow (UI or API JSON) or a ``pipeline.toml``-style graph, by content."""
    p = Path(path)
    suffix = p.suffix.lower()
    if p.name in (ENVELOPE_NAME, TOML_NAME) or suffix not in (".json", ".toml"):
        return False
    try:
        if p.stat().st_size > 64 << 20:
            return False
        data = p.read_bytes()
        if suffix == ".toml":
            import tomllib

            return isinstance(tomllib.loads(data.decode("utf-8")).get("nodes"), dict)
        from .workflows.comfyui import is_api_format, is_ui_format

        doc = json.loads(data)
    except (OSError, ValueError, RecursionError):
        return False
    return is_ui_format(doc) or is_api_format(doc)


def _lfs_aware(cache_path: Path) -> StatCache:
    """A stat cache that answers for LFS pointers with the digest they point to.

    The resolver identifies a file by the digest of its bytes; in a checkout
    where weights are LFS pointers, the bytes a workflow will load are the
    pointed-to content, whose sha256 is the pointer's oid (git-lfs checks it on
    download). Pointers are read each time, never stored.
    """
    from .digest import FileDigest, StatCache
    from .lfs import MAX_POINTER_SIZE, read_pointer

    def pointer(file_path: str | Path) -> FileDigest | None:
        try:
            if os.stat(file_path).st_size >= MAX_POINTER_SIZE:
                return None
            found = read_pointer(file_path)
        except (OSError, ValueError):
            return None
        return FileDigest(found.oid, found.size) if found else None

    class LfsStatCache(StatCache):
        def get(self, file_path: str | Path) -> FileDigest | None:
            return pointer(file_path) or super().get(file_path)

        def put(self, file_path: str | Path, digest: FileDigest) -> None:
            if pointer(file_path) is None:
                super().put(file_path, digest)

    return LfsStatCache(cache_path)


def find_workflows(under: Sequence[Path] = (Path("."),)) -> list[str]:
    names = _git_files(under)
    if names is None:
        names = []
        for top in under:
            for dirpath, dirnames, filenames in os.walk(top):
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                names.extend(os.path.join(dirpath, f) for f in filenames)
    return sorted(n for n in names if is_workflow(n))


def workflows(
    files: Iterable[str],
    trust: Trust,
    *,
    registry: str | None = None,
    models_dir: Path = Path("."),
    bundles: Sequence[Path] = (),
    stat_cache: StatCache | None = None,
) -> list[str]:
    """Each workflow resolves to one release (resolver) and its params are in range.

    Releases come from ``registry`` when given, else from the signed bundles of
    the repository itself (``bundles``), verified with the hook's trust input.
    """
    import tempfile

    from .errors import SonicRegistryError
    from .params import check_params
    from .registry import RELEASES_DIR, Registry, open_registry
    from .resolver import analyze_graph
    from .workflows import load_graph

    files = list(files)
    if not files:
        return []
    store = trust.load()
    out: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sonic-hook-") as tmp:
        if registry is not None:
            reg = open_registry(registry, store)
        else:
            (Path(tmp) / "registry" / RELEASES_DIR).mkdir(parents=True)  # may stay empty
            reg = Registry(Path(tmp) / "registry", store)
            for root in bundles:
                # A bundle whose envelope does not verify is the verify hook's to
                # report; here its files simply stay unknown, hence refused.
                with contextlib.suppress(SonicRegistryError):
                    reg.add(root / ENVELOPE_NAME, record_serial=False)
        try:
            for f in files:
                try:
                    res = analyze_graph(load_graph(f), reg, models_dir, stat_cache=stat_cache)
                except SonicRegistryError as exc:
                    out += _lines(exc)
                    continue
                out += [str(p) for p in res.problems]
                if res.problems or res.release is None:
                    continue
                # Only parameters the release signs ranges for are judged; the others
                # (seed, fps, ...) are data assumptions the resolver already reports.
                release = res.release.release
                ranged = {k: v for k, v in res.params.items() if k in release.params}
                try:
                    report = check_params(release, ranged)
                except SonicRegistryError as exc:
                    out += [f"{f}: {line}" for line in _lines(exc)]
                    continue
                except ExceptionGroup as group:
                    out += [f"{f}: {e}" for e in group.exceptions]
                    continue
                out += [f"{f}: {c.message}" for c in report.errors]
        finally:
            reg.close()
    return out


# --- command line -----------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sonic-registry-hook",
        description="pre-commit hooks: silent + exit 0 when clean, one line per bad file + "
        "exit 1 otherwise, exit 2 for usage errors.",
    )
    sub = parser.add_subparsers(dest="hook", required=True, metavar="{verify,no-pickle,workflows}")

    def trust_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--trust", type=Path, help="trust.json (usually committed in the repo)")
        p.add_argument(
            "--public-key",
            dest="public_keys",
            type=Path,
            action="append",
            default=[],
            help="trust this public key (PEM) for both channels; repeatable",
        )

    v = sub.add_parser("verify", help="every bundle matches its signed release.dsse.json")
    trust_args(v)
    v.add_argument(
        "--under",
        type=Path,
        action="append",
        default=[],
        help="look for bundles only below this directory (repeatable; default: the repo)",
    )
    v.add_argument("--cache-dir", type=Path, help="default: $GIT_DIR/sonic-registry")
    v.add_argument("--no-cache", action="store_true", help="re-hash everything")
    v.add_argument("files", nargs="*", help="changed files (from pre-commit)")

    n = sub.add_parser("no-pickle", help="refuse pickle checkpoints by content")
    n.add_argument("files", nargs="*")

    w = sub.add_parser("workflows", help="workflows resolve to one release with valid params")
    trust_args(w)
    w.add_argument("--registry", help="registry directory or URL (default: the repo's bundles)")
    w.add_argument(
        "--models-dir",
        type=Path,
        default=Path("."),
        help="folder the workflows' file names are relative to (default: the repo root)",
    )
    w.add_argument("--cache-dir", type=Path, help="default: $GIT_DIR/sonic-registry")
    w.add_argument(
        "files",
        nargs="*",
        help="workflow files to check (default: every workflow in the repo)",
    )
    return parser


def _trust_from(args: argparse.Namespace) -> Trust:
    if args.trust is None and not args.public_keys:
        raise HookUsageError(
            "no trusted keys: add `args: [--trust, trust.json]` (or --public-key KEY.pub) "
            "to the hook"
        )
    return Trust(args.trust, tuple(args.public_keys))


def run(argv: Sequence[str]) -> list[str]:
    """Run one hook; return its problem lines (raises HookUsageError for exit 2)."""
    args = _parser().parse_args(argv)
    if args.hook == "no-pickle":
        return no_pickle(args.files)
    trust = _trust_from(args)
    if args.hook == "workflows":
        cache = _lfs_aware((args.cache_dir or default_cache_dir()) / "statcache.json")
        files = [f for f in args.files if is_workflow(f)] if args.files else find_workflows()
        found = workflows(
            files,
            trust,
            registry=args.registry,
            models_dir=args.models_dir,
            bundles=find_bundles() if args.registry is None else (),
            stat_cache=cache,
        )
        cache.save()
        return found
    caches = Caches()
    if not args.no_cache:
        caches = Caches(args.cache_dir or default_cache_dir())
    for d in args.under:
        if not d.is_dir():
            raise HookUsageError(f"--under {d}: expected a directory of the repository")
    bundles = find_bundles(args.under or [Path(".")])
    if args.under and not bundles:
        where = ", ".join(str(d) for d in args.under)
        raise HookUsageError(f"--under {where}: no bundle (release.toml / release.dsse.json)")
    # With --under, only changed files below those directories are this hook's business.
    loose = [f for f in args.files if _below(f, args.under)] if args.under else args.files
    return verify_repo(bundles, trust, caches=caches, loose=loose)


def _below(path: str, dirs: Sequence[Path]) -> bool:
    real = os.path.realpath(path)
    return any(real.startswith(os.path.realpath(d).rstrip(os.sep) + os.sep) for d in dirs)


def _emit(lines: Iterator[str] | list[str]) -> None:
    for line in lines:
        sys.stdout.write(line + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``sonic-registry-hook verify|no-pickle|workflows [args] [files]``."""
    from .errors import SonicRegistryError

    try:
        problems = run(sys.argv[1:] if argv is None else argv)
    except SystemExit as exc:  # argparse: usage errors exit 2, --help exits 0
        return int(exc.code or 0)
    except HookUsageError as exc:
        sys.stderr.write(f"sonic-registry-hook: {exc}\n")
        return 2
    except SonicRegistryError as exc:
        for p in exc.problems:
            sys.stderr.write(f"sonic-registry-hook: {p}\n")
        return max(p.exit_code for p in exc.problems)
    except KeyboardInterrupt:
        return 130
    _emit(problems)
    return 1 if problems else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
