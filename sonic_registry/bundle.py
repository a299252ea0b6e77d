"""A model directory and its signed manifest: sign it, verify it (file checks: :mod:`.filecheck`).

``verify_envelope`` answers "did enough trusted keys sign this statement?";
``verify_bundle`` adds "and are the files on disk exactly the signed ones?".
Each check below is a numbered step; the order matters (signatures are checked
before the payload is trusted, sizes before any byte is hashed, the rollback
serial is recorded only after every file verified).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .canonical import canonical_bytes, loads_strict
from .confine import confined, path_in_bundle
from .constants import ENVELOPE_NAME, TOML_NAME
from .digest import (
    FileDigest,
    blake3_available,
    blake3_file,
    sharded_digests,
)
from .errors import (
    ExpiredReleaseError,
    InvalidManifest,
    UnreadableInputError,
    UnsignedReleaseError,
    UsageError,
    VerificationError,
    raise_all,
)
from .filecheck import (
    Progress,
    SubjectDigest,
    check_files,
    list_bundle_files,
)
from .fileio import atomic_write_bytes
from .hashing import SHARD_SIZE
from .hexdigest import is_sha256_hex
from .manifest import (
    PREDICATE_TYPE,
    Release,
    check_distinct_names,
    check_relative_path,
    parse_time,
)
from .prehash import Prehash
from .safetensors_header import check_claimed_safetensors
from .schema import validate
from .signing import Envelope, PrivateKey, PublicKey
from .trust import TrustStore, get_verification_result, record_verified_serial, resolve_trust

__all__ = [
    "ENVELOPE_NAME",
    "STATEMENT_TYPE",
    "TOML_NAME",
    "SubjectDigest",
    "VerifiedRelease",
    "VerifiedStatement",
    "build_statement",
    "check_files",
    "check_model",
    "list_bundle_files",
    "path_in_bundle",
    "sign_bundle",
    "verify_bundle",
    "verify_envelope",
]

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


@dataclass(frozen=True)
class VerifiedStatement:
    """A statement whose signatures met the trust store's threshold."""

    release: Release
    subjects: Mapping[str, SubjectDigest]
    channel: str
    signers: tuple[str, ...]
    manifest_digest: str
    envelope: Envelope

    def to_dict(self) -> dict[str, Any]:
        r = self.release
        return {
            "model": r.model,
            "version": r.version,
            "serial": r.serial,
            "release_id": r.release_id,
            "channel": self.channel,
            "official": self.channel == "official",
            "signers": list(self.signers),
            "manifest_digest": self.manifest_digest,
            "expires": r.expires,
        }


@dataclass(frozen=True)
class VerifiedRelease(VerifiedStatement):
    """A bundle whose every listed file matched its signed size and digest."""

    root: Path = Path(".")
    warnings: tuple[str, ...] = field(default=())
    #: Files confined and size-checked but not hashed yet: ``hash_on_load``
    #: promised that they are read only through the verified loader, which
    #: hashes them in the same pass that builds the tensors.
    unhashed: frozenset[str] = frozenset()

    @property
    def files(self) -> Mapping[str, FileDigest]:
        return MappingProxyType({n: s.file for n, s in self.subjects.items()})

    def path_of(self, name: str) -> Path:
        return self.root / name

    def to_dict(self) -> dict[str, Any]:
        return {
            **super().to_dict(),
            "root": str(self.root),
            "files": len(self.subjects),
            "bytes": sum(s.size for s in self.subjects.values()),
            "warnings": list(self.warnings),
        }


# --- signing ------------------------------------------------------------------


def build_statement(release: Release, files: Mapping[str, SubjectDigest]) -> dict[str, Any]:
    subjects = []
    for name in sorted(files):
        d = files[name]
        annotations: dict[str, Any] = {"size": d.size}
        if d.shards:
            annotations["shards"] = {"size": d.shard_size, "sha256": list(d.shards)}
        digest = {"sha256": d.sha256} | ({"blake3": d.blake3} if d.blake3 else {})
        subjects.append({"name": name, "digest": digest, "annotations": annotations})
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": release.to_predicate(),
    }


def _digest_bundle(
    root: Path,
    names: Sequence[str],
    progress: Progress | None,
    threads: int | None,
    shard_size: int,
    with_blake3: bool,
) -> dict[str, SubjectDigest]:
    # Hash the confined target of each name (list_bundle_files allows links that
    # stay inside the root), exactly as check_files does when verifying.
    real_root = os.path.realpath(root)
    reals = [confined(root, real_root, n) for n in names]
    digests = sharded_digests(
        reals, shard_size=shard_size, whole=True, threads=threads, progress=progress
    )
    b3 = [blake3_file(r, threads=threads)[0] for r in reals] if with_blake3 else None
    return {
        n: SubjectDigest(d.sha256, d.size, d.shard_size, d.shards, b3[i] if b3 else None)
        for i, (n, d) in enumerate(zip(names, digests, strict=True))
    }


def sign_bundle(
    root: str | Path,
    key: PrivateKey,
    *,
    progress: Progress | None = None,
    threads: int | None = None,
    now: datetime | None = None,
    shard_size: int = SHARD_SIZE,
    blake3: bool = False,
) -> tuple[Path, Envelope, bool]:
    """Sign ``root/release.toml`` + every file; returns (path, envelope, added_to_existing).

    When ``release.dsse.json`` already holds the same statement, the signature
    is added to it (threshold signing); when the content changed, the serial
    must have been bumped, so an old and a new manifest never share a serial.
    ``blake3=True`` also signs each file's BLAKE3 digest (needs the ``blake3``
    extra), which verifiers with BLAKE3 installed check instead of SHA-256.
    """
    if blake3 and not blake3_available():
        raise UsageError("--blake3", "the blake3 package is not installed: pip install blake3")
    base = Path(root)
    if not base.is_dir():
        raise UnreadableInputError(str(base), "expected a model directory")
    out = base / ENVELOPE_NAME
    previous: Envelope | None = Envelope.load(out) if out.exists() else None
    prev_predicate: Mapping[str, Any] | None = None
    if previous is not None:
        # The envelope being extended is input like any other: schema-checked
        # before any field of it is used.
        statement = loads_strict(previous.payload, where=f"{out}: payload")
        validate(statement, "statement", where=f"{out}: payload")
        prev_predicate = statement["predicate"]

    # Re-signing an unchanged release keeps the defaults (created/expires) that the
    # first signature chose, so a second key signs exactly the same payload bytes.
    keep = {k: prev_predicate[k] for k in ("created", "expires")} if prev_predicate else None
    release = Release.from_toml(base / TOML_NAME, now=now, defaults=keep)

    names = list_bundle_files(base)
    for name in names:  # DESIGN.md's path rules, before anything is hashed or signed
        check_relative_path(name, field="file", path=str(base))
    check_distinct_names(names, field="file", path=str(base))
    _require_component_files(release, names, where=str(base / TOML_NAME))
    check_claimed_safetensors(release, partial(path_in_bundle, base))
    digests = _digest_bundle(base, names, progress, threads, shard_size, blake3)
    statement = build_statement(release, digests)
    payload = canonical_bytes(statement)

    added = False
    if previous is not None and previous.payload == payload:
        envelope = previous.signed_by(key)
        added = True
    else:
        if prev_predicate is not None and _same_release(prev_predicate, release):
            old = prev_predicate.get("serial", 0)
            if isinstance(old, int) and release.serial <= old:
                raise InvalidManifest(
                    "release.serial",
                    f"content changed since serial {old} was signed; expected serial > {old}, "
                    f"found {release.serial} (bump it in release.toml)",
                    path=str(base / TOML_NAME),
                )
        envelope = Envelope(payload=payload).signed_by(key)
    atomic_write_bytes(out, envelope.to_json())
    return out, envelope, added


def _require_component_files(release: Release, names: Sequence[str], *, where: str) -> None:
    listed = set(names)
    for component in release.components.values():
        for name in component.paths:
            if name not in listed:
                raise InvalidManifest(
                    f"components.{component.role}.path",
                    f"expected a file in the bundle, found no {name!r}",
                    path=where,
                )


def _same_release(pred: Mapping[str, Any], release: Release) -> bool:
    return bool(pred.get("model") == release.model and pred.get("version") == release.version)


# --- verification -------------------------------------------------------------


def _parse_subjects(statement: Mapping[str, Any], where: str) -> dict[str, SubjectDigest]:
    subjects: dict[str, SubjectDigest] = {}
    for i, s in enumerate(statement["subject"]):
        name = check_relative_path(s["name"], field=f"subject.{i}.name", path=where)
        if name in subjects:
            raise InvalidManifest(f"subject.{i}.name", f"duplicate subject {name!r}", path=where)
        ann = s["annotations"]
        shards_spec = ann.get("shards")
        shard_size, shards = SHARD_SIZE, ()
        if shards_spec is not None:
            ok = (
                isinstance(shards_spec, Mapping)
                and isinstance(shards_spec.get("size"), int)
                and not isinstance(shards_spec.get("size"), bool)
                and shards_spec["size"] > 0
                and isinstance(shards_spec.get("sha256"), list)
                and all(is_sha256_hex(h) for h in shards_spec["sha256"])
            )
            if not ok or len(shards_spec["sha256"]) != -(-ann["size"] // shards_spec["size"]):
                raise InvalidManifest(
                    f"subject.{i}.annotations.shards",
                    "expected {size: int, sha256: [one hex digest per shard]}",
                    path=where,
                )
            shard_size, shards = shards_spec["size"], tuple(shards_spec["sha256"])
        subjects[name] = SubjectDigest(
            s["digest"]["sha256"], ann["size"], shard_size, shards, s["digest"].get("blake3")
        )
    check_distinct_names(subjects, field="subject", path=where)
    return subjects


def verify_envelope(
    envelope: Envelope | str | Path,
    trust: TrustStore,
    *,
    allow_unsigned: bool = False,
    now: datetime | None = None,
    where: str | None = None,
) -> VerifiedStatement:
    """Check signatures, threshold, expiry, revocation and rollback; no file is read."""
    if not isinstance(envelope, Envelope):
        where = where or str(envelope)
        envelope = Envelope.load(envelope)
    where = where or ENVELOPE_NAME
    moment = now or datetime.now(UTC)

    # Step 1: sort the signatures (trust.get_verification_result, the one home
    # of that rule): which trusted, unexpired, unrevoked keys signed the exact
    # payload bytes (PAE), and why every other signature does not count.
    result = get_verification_result(
        trust, envelope.signatures, envelope.pae(), where=where, now=moment
    )
    if not result.valid and not allow_unsigned:
        result.require(None, where)

    # Step 2: only now parse the payload (it carries at least one trusted
    # signature, or the caller opted into unsigned releases).
    statement = loads_strict(envelope.payload, where=f"{where}: payload")
    validate(statement, "statement", where=f"{where}: payload")
    release = Release.from_predicate(statement["predicate"], where=f"{where}: payload")
    subjects = _parse_subjects(statement, f"{where}: payload")
    for component in release.components.values():
        for name in component.paths:
            if name not in subjects:
                raise InvalidManifest(
                    f"predicate.components.{component.role}.paths",
                    f"expected {name!r} among the subjects, found it unlisted",
                    path=f"{where}: payload",
                )

    # Step 3: the claimed channel needs its role's threshold of distinct keys.
    # Official keys do not silently vouch for community releases or vice versa:
    # a key counts only for the roles the trust store gives it.
    channel = release.channel
    counted: tuple[str, ...]
    if allow_unsigned and not result.valid:
        channel, counted = "unverified", ()
    else:
        counted = tuple(k.label for k in result.require(channel, where))

    # Step 4: the release itself must not have expired.
    if parse_time(release.expires) <= moment:
        raise ExpiredReleaseError(
            where, f"release {release.release_id} expired at {release.expires}"
        )

    # Step 5: prevent rollback to an older serial of the same model@version.
    trust.check_rollback(release.model, release.version, release.serial, where=where)

    return VerifiedStatement(
        release=release,
        subjects=MappingProxyType(subjects),
        channel=channel,
        signers=tuple(counted),
        manifest_digest=envelope.payload_digest,
        envelope=envelope,
    )


def verify_bundle(
    root: str | Path,
    trust: TrustStore | str | Path | None = None,
    *,
    public_keys: Iterable[PublicKey] = (),
    allow_unsigned: bool = False,
    record_serial: bool = True,
    envelope: str | Path | None = None,
    progress: Progress | None = None,
    threads: int | None = None,
    now: datetime | None = None,
    prefer_blake3: bool = True,
    hash_on_load: Collection[str] = (),
    prehash: Prehash | None = None,
    model: str | None = None,
    strict: bool = False,
) -> VerifiedRelease:
    """Verify a model directory against its signed ``release.dsse.json``.

    ``strict`` refuses hard-linked files instead of warning about them.

    ``model`` binds the release to a model: a release of another model (a
    ``dicetalk`` bundle where a ``sonic`` one belongs), even signed by a trusted
    key, is refused before any file is hashed or any serial recorded.

    ``trust`` is a :class:`TrustStore` or a path to ``trust.json``;
    ``public_keys`` pins keys directly (both channels, threshold 1). Raises a
    :class:`~sonic_registry.errors.VerificationError` (exit 1) listing every
    problem in ``.problems``, or a ``UsageError`` (exit 2) for unreadable input.

    ``hash_on_load`` names roles whose files the caller will read only through
    :mod:`sonic_registry.loader`: they are confined and size-checked here but
    hashed by the loader in the same read that builds the tensors, so a model's
    bytes are read once (``VerifiedRelease.unhashed`` lists them).

    ``prehash`` (from :func:`sonic_registry.prehash.start_prehash`, started
    before this call) hashes the listed files while the signatures are checked;
    it is cancelled if they fail.

    A bundle without ``release.dsse.json`` is unsigned: refused (exit 1)
    unless ``allow_unsigned``, then described from ``release.toml`` and the
    files as they are, and labelled "unverified".
    """
    try:  # every way out cancels the prehash (a no-op once its digests were taken)
        base = Path(root)
        if not base.is_dir():
            raise UnreadableInputError(str(base), "expected a model directory")
        store = resolve_trust(trust, public_keys)
        env_path = Path(envelope) if envelope is not None else base / ENVELOPE_NAME
        if envelope is None and not env_path.exists():
            # Step 0: no envelope at all is a verdict about the bundle, not bad input.
            if not allow_unsigned:
                raise UnsignedReleaseError(
                    str(env_path),
                    f"expected a signed release, found no {ENVELOPE_NAME} "
                    f"(run `sonic-registry sign {base} --key KEY`)",
                )
            unsigned = _unsigned_release(base, progress=progress, threads=threads)
            check_model(unsigned.release, model, str(base / TOML_NAME))
            return unsigned
        return _verify_signed(
            base,
            store,
            env_path,
            allow_unsigned=allow_unsigned,
            record_serial=record_serial,
            progress=progress,
            threads=threads,
            now=now,
            prefer_blake3=prefer_blake3,
            hash_on_load=hash_on_load,
            prehash=prehash,
            model=model,
            strict=strict,
        )
    finally:
        if prehash is not None:
            prehash.cancel()


def check_model(release: Release, model: str | None, where: str) -> None:
    """Refuse a release of another model than ``model`` (None: any model)."""
    if model is not None and release.model != model:
        raise VerificationError(
            where,
            f"release.model: expected {model!r}, found {release.model!r} "
            f"(a release of another model never satisfies a {model} pipeline)",
        )


def _verify_signed(
    base: Path,
    store: TrustStore,
    env_path: Path,
    *,
    allow_unsigned: bool,
    record_serial: bool,
    progress: Progress | None,
    threads: int | None,
    now: datetime | None,
    prefer_blake3: bool,
    hash_on_load: Collection[str],
    prehash: Prehash | None,
    model: str | None = None,
    strict: bool = False,
) -> VerifiedRelease:
    statement = verify_envelope(env_path, store, allow_unsigned=allow_unsigned, now=now)
    check_model(statement.release, model, str(env_path))
    unhashed = frozenset(
        name
        for role in hash_on_load
        if role in statement.release.components
        for name in statement.release.components[role].paths
    )

    def defer(name: str, real: str, st: os.stat_result, want: SubjectDigest) -> bool | None:
        return True if name in unhashed and st.st_size == want.size else None

    problems, warnings = check_files(
        base,
        statement.subjects,
        progress=progress,
        threads=threads,
        prefer_blake3=prefer_blake3,
        shortcut=defer if unhashed else None,
        prehash=prehash,
        strict=strict,
    )
    raise_all(problems)
    check_claimed_safetensors(statement.release, partial(path_in_bundle, base))
    if record_serial:
        record_verified_serial(store, statement, where=str(env_path))
    return VerifiedRelease(
        release=statement.release,
        subjects=statement.subjects,
        channel=statement.channel,
        signers=statement.signers,
        manifest_digest=statement.manifest_digest,
        envelope=statement.envelope,
        root=base,
        warnings=tuple(warnings),
        unhashed=unhashed,
    )


def _unsigned_release(
    base: Path, *, progress: Progress | None, threads: int | None
) -> VerifiedRelease:
    """What an unsigned bundle claims (``release.toml`` + current digests): 'unverified'."""
    release = Release.from_toml(base / TOML_NAME)
    names = list_bundle_files(base)
    _require_component_files(release, names, where=str(base / TOML_NAME))
    subjects = _digest_bundle(base, names, progress, threads, SHARD_SIZE, with_blake3=False)
    envelope = Envelope(payload=canonical_bytes(build_statement(release, subjects)))
    return VerifiedRelease(
        release=release,
        subjects=MappingProxyType(subjects),
        channel="unverified",
        signers=(),
        manifest_digest=envelope.payload_digest,
        envelope=envelope,
        root=base,
        warnings=(f"{ENVELOPE_NAME}: missing; nothing about this bundle is verified",),
    )
