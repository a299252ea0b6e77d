"""Publishing a registry directory as a TUF repository (python-tuf's metadata API).

TUF gives clients freshness and consistency: signed, expiring timestamp /
snapshot / targets metadata, so a mirror can neither freeze the registry, roll
it back, mix files from two states, nor withhold a release unnoticed. It does
not decide which releases to trust: every envelope is still verified with
the client's own trust store (see docs/registry.md).

Layout added to a registry directory (all of it static files)::

    metadata/<N>.root.json, root.json          root (the offline key signs it)
    metadata/timestamp.json                    the only file without a version in its name
    metadata/<V>.snapshot.json                 consistent snapshots: every file a client
    metadata/<V>.targets.json                  fetches by version is immutable, so a CDN
    metadata/<V>.bins-<x>.json                 may cache it forever
    packs/<sha256>.bins-<x>.<n>.json           every envelope of one bin, for a first download

Targets are the release envelopes (``releases/<model>/<version>/<serial>.dsse.json``,
immutable names). They are spread over ``2**bits`` hashed bins (TAP 15 succinct
delegation), so one new release rewrites one bin, the snapshot and the
timestamp, not a multi-megabyte targets file. The number of bins grows with
the registry (:func:`bits_for`), so a bin, and what a client holds while it
downloads a few of them, stays about the same size at any number of releases.
Each bin also lists one *pack*, a JSON object of all its envelopes, whose
target path is chosen to hash into that same bin: a new client downloads one
pack per bin instead of one request per release, and checks every envelope in
it against its own targets entry.

Keys: one offline root key signs root; one online key signs targets, the bins,
snapshot and timestamp. A compromised online key is replaced by
:func:`rotate_online_key`, which the offline root signs as a new root version.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import UnreadableInputError, UsageError
from ..fileio import atomic_write_bytes, read_bounded
from . import index as ix

if TYPE_CHECKING:
    from securesystemslib.signer import CryptoSigner
    from tuf.api.metadata import Metadata, Root, TargetFile, Targets

    from ..signing import PrivateKey

__all__ = [
    "BIN_PREFIX",
    "MAX_PER_BIN",
    "METADATA_DIR",
    "PACKS_DIR",
    "PublishResult",
    "bits_for",
    "init_repository",
    "is_tuf_registry",
    "pack_path",
    "publish",
    "rotate_online_key",
]

METADATA_DIR = "metadata"
PACKS_DIR = "packs"
BIN_PREFIX = "bins"
DEFAULT_BITS = 5
MAX_BITS = 14
#: Releases per hashed bin, on average, beyond which `publish` doubles the bins.
#: A first refresh holds a few bins' envelopes and metadata at a time, so the
#: size of a bin sets the client's peak memory; the number of bins sets the
#: requests (two per bin). Measured with bench/registry_tuf.py at 10,000
#: releases (50 ms per request), first run from an empty cache: 32 bins (312
#: per bin) 60 MiB, 64 bins 55 MiB, 128 bins (78 per bin) 51 MiB, 256 bins
#: 50 MiB, against 45 MiB for a registry of 100; 256 bins took 9.2 s instead of
#: 6-7 s (516 requests). 128 keeps the peak near the floor with half the requests.
MAX_PER_BIN = 128
#: Lifetime of each role's metadata; `registry publish` re-signs a role once
#: half of its lifetime has passed, so run it (cron) at least every few days.
LIFETIME = {
    "root": timedelta(days=365),
    "targets": timedelta(days=365),
    "bins": timedelta(days=90),
    "snapshot": timedelta(days=30),
    "timestamp": timedelta(days=7),
}
MAX_METADATA_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What one publish wrote: the new timestamp version and the bins it re-signed."""

    timestamp_version: int
    snapshot_version: int
    bins_changed: tuple[str, ...]
    targets: int


def is_tuf_registry(root: Path) -> bool:
    """True when ``root`` holds TUF metadata (made by `registry init`)."""
    return (root / METADATA_DIR / "timestamp.json").is_file()


def bits_for(releases: int, bits: int = DEFAULT_BITS) -> int:
    """The fewest bins, at least ``2**bits``, that hold ``releases`` at MAX_PER_BIN per bin."""
    while releases > MAX_PER_BIN << bits and bits < MAX_BITS:
        bits += 1
    return bits


def _signer(key: PrivateKey) -> CryptoSigner:
    from securesystemslib.signer import CryptoSigner

    return CryptoSigner(key.key)


def _expiry(role: str, now: datetime) -> datetime:
    return (now + LIFETIME[role]).replace(microsecond=0)


def pack_path(bin_name: str, bits: int) -> str:
    """The pack's target path: the first ``packs/<bin>.<n>.json`` that hashes into ``bin_name``."""
    from tuf.api.metadata import SuccinctRoles

    succinct = SuccinctRoles([], 1, bits, BIN_PREFIX)
    n = 0
    while succinct.get_role_for_target(f"{PACKS_DIR}/{bin_name}.{n}.json") != bin_name:
        n += 1
    return f"{PACKS_DIR}/{bin_name}.{n}.json"


def hashed_name(target_path: str, sha256: str) -> str:
    """Where a consistent-snapshot target is stored: ``dir/<sha256>.<name>``."""
    head, _, name = target_path.rpartition("/")
    return f"{head}/{sha256}.{name}"


class _Store:
    """Reads and writes the metadata files of one repository directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / METADATA_DIR

    def _read(self, name: str) -> Metadata[Any]:
        from tuf.api.metadata import Metadata

        path = self.dir / name
        if not path.is_file():
            raise UnreadableInputError(
                str(path), "missing TUF metadata; run `sonic-registry registry init`"
            )
        return Metadata.from_bytes(read_bounded(path, MAX_METADATA_BYTES, kind="TUF metadata"))

    def root_md(self) -> Metadata[Root]:
        return self._read("root.json")

    def timestamp(self) -> Metadata[Any]:
        return self._read("timestamp.json")

    def versioned(self, role: str, version: int) -> Metadata[Any]:
        return self._read(f"{version}.{role}.json")

    def write(self, role: str, md: Metadata[Any], signer: CryptoSigner) -> None:
        from tuf.api.serialization.json import JSONSerializer

        md.signatures.clear()
        md.sign(signer)
        data = md.to_bytes(JSONSerializer(compact=True))
        self.dir.mkdir(parents=True, exist_ok=True)
        if role == "timestamp":
            atomic_write_bytes(self.dir / "timestamp.json", data)
            return
        atomic_write_bytes(self.dir / f"{md.signed.version}.{role}.json", data)
        if role == "root":
            atomic_write_bytes(self.dir / "root.json", data)


def init_repository(
    root: Path, root_key: PrivateKey, online_key: PrivateKey, bits: int = DEFAULT_BITS
) -> None:
    """Write root, targets (with ``2**bits`` hashed bins), the bins, snapshot and timestamp.

    ``bits`` is where the bins start: :func:`publish` adds bins as releases are added.
    """
    from securesystemslib.signer import Key, SSlibKey
    from tuf.api.metadata import (
        Delegations,
        Metadata,
        MetaFile,
        Role,
        Root,
        Snapshot,
        SuccinctRoles,
        Targets,
        Timestamp,
    )

    if is_tuf_registry(root):
        raise UsageError(str(root), "already a TUF registry (metadata/ exists); use publish")
    if not 1 <= bits <= MAX_BITS:
        raise UsageError("--bins-bits", f"expected 1..{MAX_BITS}, found {bits}")
    now = datetime.now(UTC)
    store = _Store(root)
    (root / ix.RELEASES_DIR).mkdir(parents=True, exist_ok=True)
    root_pub = SSlibKey.from_crypto(root_key.key.public_key())
    online_pub = SSlibKey.from_crypto(online_key.key.public_key())
    roles = {"root": Role([root_pub.keyid], 1)} | {
        r: Role([online_pub.keyid], 1) for r in ("targets", "snapshot", "timestamp")
    }
    keys: dict[str, Key] = {root_pub.keyid: root_pub, online_pub.keyid: online_pub}
    root_md = Metadata(Root(1, None, _expiry("root", now), keys, roles, True))
    store.write("root", root_md, _signer(root_key))
    online = _signer(online_key)
    succinct = SuccinctRoles([online_pub.keyid], 1, bits, BIN_PREFIX)
    delegations = Delegations({online_pub.keyid: online_pub}, succinct_roles=succinct)
    store.write(
        "targets", Metadata(Targets(1, None, _expiry("targets", now), {}, delegations)), online
    )
    meta = {"targets.json": MetaFile(1)}
    for name in succinct.get_roles():
        store.write(name, Metadata(Targets(1, None, _expiry("bins", now))), online)
        meta[f"{name}.json"] = MetaFile(1)
    store.write("snapshot", Metadata(Snapshot(1, None, _expiry("snapshot", now), meta)), online)
    ts = Timestamp(1, None, _expiry("timestamp", now), MetaFile(1))
    store.write("timestamp", Metadata(ts), online)


def _desired_targets(root: Path) -> dict[str, tuple[str, int]]:
    """path -> (sha256, length) of the newest envelope per model@version (the index)."""
    from .local import LocalSource

    src = LocalSource(root, _no_verify, [])
    try:
        rows = src.rows("SELECT envelope, envelope_sha256 FROM releases", locked=True)
    finally:
        src.close()
    return {str(p): (str(s), (root / str(p)).stat().st_size) for p, s in rows}


def _no_verify(data: bytes, where: str) -> Any:
    raise UsageError(where, "the TUF publisher never re-verifies envelopes; rebuild the index")


def _stale(md: Metadata[Any], role: str, now: datetime) -> bool:
    """True once half of the role's lifetime has passed (time to re-sign it)."""
    expires: datetime = md.signed.expires
    return expires - now < LIFETIME[role] / 2


def _bin_targets(
    root: Path, old: Targets, wanted: dict[str, tuple[str, int]]
) -> dict[str, TargetFile]:
    """The envelope targets of one bin, reusing entries whose path is unchanged."""
    from tuf.api.metadata import TargetFile

    from .local import read_envelope_file

    out: dict[str, TargetFile] = {}
    for path, (sha, _length) in sorted(wanted.items()):
        prev = old.targets.get(path)
        if prev is not None and prev.hashes.get("sha256") == sha:
            out[path] = prev
        else:
            # The index is a hint: hash the bytes that will be served.
            data = read_envelope_file(root / path)
            out[path] = TargetFile.from_data(path, data, ["sha256"])
    return out


def _write_pack(root: Path, bin_name: str, bits: int, targets: dict[str, TargetFile]) -> TargetFile:
    """Write the bin's pack (every envelope it lists) under its hash; its targets entry.

    Each envelope is read again (bounded) and must still be the bytes its targets entry
    hashes: one changed on disk since it was indexed would otherwise make a pack every
    client refuses, published without a word.
    """
    from tuf.api.metadata import TargetFile

    from .local import read_envelope_file

    envelopes: dict[str, str] = {}
    for p in sorted(targets):
        raw = read_envelope_file(root / p)
        want = targets[p].hashes["sha256"]
        if hashlib.sha256(raw).hexdigest() != want:
            raise UnreadableInputError(
                str(root / p),
                f"changed since it was indexed (expected sha256 {want}): run "
                "`sonic-registry registry rebuild-index`, then publish again",
            )
        envelopes[p] = raw.decode("utf-8")
    data = json.dumps({"envelopes": envelopes}, sort_keys=True, separators=(",", ":")).encode()
    path = pack_path(bin_name, bits)
    entry = TargetFile.from_data(path, data, ["sha256"])
    target = root / hashed_name(path, entry.hashes["sha256"])
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        atomic_write_bytes(target, data)
    return entry


def publish(root: Path, online_key: PrivateKey, *, force: bool = False) -> PublishResult:
    """Bring the TUF metadata in line with the registry's index; always a new timestamp."""
    from ..locks import file_lock

    if not is_tuf_registry(root):
        raise UsageError(
            str(root), "not a TUF registry (no metadata/); run `sonic-registry registry init`"
        )
    with file_lock(root / ix.LOCK_TARGET, timeout=120):
        return _publish_locked(root, online_key, force=force)


def _publish_locked(
    root: Path, online_key: PrivateKey, *, force: bool, rekey: Any = None
) -> PublishResult:
    from tuf.api.metadata import MetaFile, SuccinctRoles

    now = datetime.now(UTC)
    store = _Store(root)
    online = _signer(online_key)
    _check_online_key(store, online)
    ts_md = store.timestamp()
    snap_md = store.versioned("snapshot", ts_md.signed.snapshot_meta.version)
    targets_md = store.versioned("targets", snap_md.signed.meta["targets.json"].version)
    succinct: SuccinctRoles = targets_md.signed.delegations.succinct_roles
    if rekey is not None:
        targets_md.signed.delegations.keys = {rekey.keyid: rekey}
        succinct.keyids = [rekey.keyid]
    desired = _desired_targets(root)
    bits = bits_for(len(desired), succinct.bit_length)
    if bits != succinct.bit_length:
        # More bins: the targets role delegates to the new layout; bins of the
        # old one stay listed in the snapshot (clients refuse a snapshot that
        # drops a file), unchanged and no longer delegated, so clients skip them.
        succinct = SuccinctRoles(succinct.keyids, succinct.threshold, bits, BIN_PREFIX)
        targets_md.signed.delegations.succinct_roles = succinct
        force_targets = True
    else:
        force_targets = force
    changed = _publish_bins(store, succinct, desired, snap_md.signed.meta, online, now, force)
    meta = snap_md.signed.meta
    if force_targets or _stale(targets_md, "targets", now):
        targets_md.signed.version += 1
        targets_md.signed.expires = _expiry("targets", now)
        store.write("targets", targets_md, online)
        meta["targets.json"] = MetaFile(targets_md.signed.version)
        changed.append("targets")
    if changed or _stale(snap_md, "snapshot", now):
        snap_md.signed.version += 1
        snap_md.signed.expires = _expiry("snapshot", now)
        store.write("snapshot", snap_md, online)
    ts_md.signed.version += 1
    ts_md.signed.expires = _expiry("timestamp", now)
    ts_md.signed.snapshot_meta = MetaFile(snap_md.signed.version)
    store.write("timestamp", ts_md, online)
    return PublishResult(ts_md.signed.version, snap_md.signed.version, tuple(changed), len(desired))


def _publish_bins(
    store: _Store,
    succinct: Any,
    desired: dict[str, tuple[str, int]],
    meta: dict[str, Any],
    online: CryptoSigner,
    now: datetime,
    force: bool,
) -> list[str]:
    """Re-sign every bin whose envelopes changed (or that is new, or stale); their names.

    Updates the snapshot's ``meta`` in place. A bin new to the snapshot starts
    at version 1; one whose name an older layout used continues its versions,
    so no client sees a version go back.
    """
    from tuf.api.metadata import Metadata, MetaFile, Targets

    wanted: dict[str, dict[str, tuple[str, int]]] = {n: {} for n in succinct.get_roles()}
    for path, value in desired.items():
        wanted[succinct.get_role_for_target(path)][path] = value
    changed: list[str] = []
    for name, want in wanted.items():
        listed = meta.get(f"{name}.json")
        if listed is None:
            bin_md: Metadata[Any] = Metadata(Targets(1, None, _expiry("bins", now)))
        else:
            bin_md = store.versioned(name, listed.version)
        targets = _bin_targets(store.root, bin_md.signed, want)
        old = {
            p: t for p, t in bin_md.signed.targets.items() if p.startswith(f"{ix.RELEASES_DIR}/")
        }
        fresh = listed is not None and not force and not _stale(bin_md, "bins", now)
        if targets == old and fresh:
            continue
        if targets:
            pack = _write_pack(store.root, name, succinct.bit_length, targets)
            targets[pack.path] = pack
        bin_md.signed.targets = targets
        if listed is not None:
            bin_md.signed.version += 1
        bin_md.signed.expires = _expiry("bins", now)
        store.write(name, bin_md, online)
        meta[f"{name}.json"] = MetaFile(bin_md.signed.version)
        changed.append(name)
    return changed


def _check_online_key(store: _Store, online: CryptoSigner) -> None:
    root_md = store.root_md()
    if online.public_key.keyid not in root_md.signed.roles["timestamp"].keyids:
        raise UsageError(
            "--online-key", "this key is not the registry's online key (see root.json)"
        )


def rotate_online_key(root: Path, root_key: PrivateKey, new_online: PrivateKey) -> int:
    """Replace the online key (say it leaked): a new root version, then everything re-signed.

    Returns the new root version. Clients follow the root chain (each version
    signed by the previous root's keys), so they stop accepting anything the
    old online key signs from their next refresh on.
    """
    from securesystemslib.signer import SSlibKey

    from ..locks import file_lock

    store = _Store(root)
    now = datetime.now(UTC)
    with file_lock(root / ix.LOCK_TARGET, timeout=120):
        root_md = store.root_md()
        signer = _signer(root_key)
        if signer.public_key.keyid not in root_md.signed.roles["root"].keyids:
            raise UsageError("--root-key", "this key is not the registry's root key")
        new_pub = SSlibKey.from_crypto(new_online.key.public_key())
        for role in ("targets", "snapshot", "timestamp"):
            for keyid in list(root_md.signed.roles[role].keyids):
                root_md.signed.revoke_key(keyid, role)
            root_md.signed.add_key(new_pub, role)
        root_md.signed.version += 1
        root_md.signed.expires = _expiry("root", now)
        store.write("root", root_md, signer)
        # Every online role is re-signed with the new key, the delegation to
        # the bins included; nothing signed by the old key stays current.
        _publish_locked(root, new_online, force=True, rekey=new_pub)
    return int(root_md.signed.version)
