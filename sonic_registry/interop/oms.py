"""Export and verify OpenSSF model_signing (OMS) signatures.

OMS (``model_signing`` on PyPI) signs a model directory, or a single file, as
a Sigstore bundle around a DSSE envelope whose in-toto Statement lists every
file (or every ``shard_size`` slice of every file) with its sha256. This
module exports its *key* flavour (``model_signing sign key``) and verifies the
key and *certificate* flavours (``verify key`` / ``verify certificate``), so a
release can carry both our ``release.dsse.json`` (versions, config, ranges,
resolver rules) and a ``model.sig`` over the same bytes, verifiable by either
tool. Sigstore keyless bundles need the public Sigstore trust root and are
refused with one line.

Keys: OMS signatures carry only ECDSA keys (P-256, P-384, P-521, each with
its own hash, as model_signing does). Ed25519 keys are refused with one usage
line, because model_signing cannot verify them.

See docs/oms.md for the field-by-field mapping between the two formats.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..canonical import canonical_bytes
from ..errors import (
    DigestMismatchError,
    InvalidManifest,
    SonicRegistryError,
    UnlistedFileError,
    UnreadableInputError,
    UsageError,
    digest_mismatch,
    raise_all,
)
from ..fileio import atomic_write_bytes, read_bounded
from ..signing import (
    PAYLOAD_TYPE,
    PrivateKey,
    PublicKey,
    load_private_key,
    pae,
)
from ..trust import TrustStore
from ._oms_format import (
    GIT_PATHS,
    SINGLE_FILE,
    OmsBundle,
    OmsStatement,
    Resource,
    Serialization,
    build_bundle,
    build_statement,
    check_relative_path,
)
from ._oms_signer import ECDSA_ALGORITHMS, Signer, key_hint, require_ecdsa
from ._oms_tree import (
    ModelFile,
    ModelTree,
    compute_digests,
    expected_names,
    names_for,
    resource_count,
    scan,
)

__all__ = [
    "MAX_SIGNATURE_BYTES",
    "OmsExport",
    "OmsVerification",
    "export_oms",
    "key_hint",
    "verify_oms",
]

#: A shards signature of a 1 TB model at 1 GB shards is ~200 KB; this is generous.
MAX_SIGNATURE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class OmsVerification:
    """What a verified OMS signature covers."""

    model_dir: Path
    signature: Path
    model_name: str
    method: str
    shard_size: int | None
    root_digest: str
    payload_sha256: str
    #: whether the signed payload bytes are RFC 8785 canonical (model_signing's are not)
    payload_canonical: bool
    #: whether the bundle named the key (model_signing < 1.1 did not)
    key_hinted: bool
    files: tuple[str, ...]
    resources: int
    ignored: tuple[str, ...]
    #: the trust store's name for the key, "pinned" for a key given directly, or
    #: the signing certificate's subject
    signer: str = "pinned"
    #: "official" / "community" from the key's trust-store roles; None otherwise
    channel: str | None = None
    #: the leaf's subject (RFC 4514) for a certificate signature
    certificate_subject: str | None = None
    #: model_signing 0.2's statement format (Digests/v0.1)
    legacy_format: bool = False
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": True,
            "signer": self.signer,
            "channel": self.channel,
            "model_dir": str(self.model_dir),
            "signature": str(self.signature),
            "model_name": self.model_name,
            "method": self.method,
            "shard_size": self.shard_size,
            "root_digest": self.root_digest,
            "payload_sha256": self.payload_sha256,
            "payload_canonical": self.payload_canonical,
            "key_hinted": self.key_hinted,
            "files": list(self.files),
            "resources": self.resources,
            "ignored": list(self.ignored),
            "certificate_subject": self.certificate_subject,
            "legacy_format": self.legacy_format,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class OmsExport:
    """What :func:`export_oms` wrote."""

    out: Path
    model_name: str
    method: str
    shard_size: int | None
    root_digest: str
    payload_sha256: str
    files: tuple[str, ...]
    resources: int
    ignored: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": True,
            "out": str(self.out),
            "model_name": self.model_name,
            "method": self.method,
            "shard_size": self.shard_size,
            "root_digest": self.root_digest,
            "payload_sha256": self.payload_sha256,
            "files": list(self.files),
            "resources": self.resources,
            "ignored": list(self.ignored),
        }


def _relative_inside(path: Path, root: Path) -> str | None:
    """``path`` relative to ``root`` (POSIX), or None when it lies outside."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return None


def _git_ignores(statement_names: Sequence[str]) -> list[str]:
    """The git paths model_signing skips by default, unless the signature lists files there.

    A signature made with ``--no-ignore-git-paths`` lists e.g. ``.gitattributes``;
    then that file is checked like any other.
    """
    return [
        g for g in GIT_PATHS if not any(n == g or n.startswith(g + "/") for n in statement_names)
    ]


def verify_oms(
    model_dir: str | Path,
    signature: str | Path,
    public_key: str | Path | PublicKey | TrustStore | None = None,
    *,
    certificate_chain: Sequence[str | Path] = (),
    ignore_paths: Sequence[str | Path] = (),
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> OmsVerification:
    """Verify a model (directory or single file) against an OMS signature; raise on any mismatch.

    The signer is one of: ``public_key``, the ECDSA key that signed (a PEM path
    or a loaded key); a :class:`TrustStore`, whose unrevoked, unexpired ECDSA
    key verifies the signature (its role is reported as the channel); or
    ``certificate_chain``, PEM files of the roots a certificate signature's
    leaf must chain to. ``ignore_paths`` (as model_signing's ``--ignore-paths``:
    absolute or relative to the working directory, inside the model) are left
    out of the comparison, but may never hide a weight file.

    Raises :class:`UsageError` subclasses (exit 2) for unreadable or malformed
    input and :class:`VerificationError` subclasses (exit 1) for the verdict;
    all file problems come at once, as ``.problems`` of the one exception raised.
    """
    root = Path(model_dir)
    sig_path = Path(signature)
    where = str(sig_path)
    if not (root.is_dir() or root.is_file()):
        raise UnreadableInputError(str(root), "expected a model directory or file")
    signer = Signer.of(public_key, certificate_chain)
    user_ignores = _user_ignores(root, ignore_paths)

    # Step 1: parse the bundle (structure only; nothing in it is trusted yet).
    data = read_bounded(
        sig_path, MAX_SIGNATURE_BYTES, kind="signature file", missing="no such signature file"
    )
    bundle = OmsBundle.from_json(data, where)

    # Step 2: who signed, through the one trust decision, over the exact payload bytes.
    label, channel, subject, warnings = signer.verify(bundle, where)

    # Step 3: only now interpret the payload, strictly, from the signed bytes.
    statement = OmsStatement.from_payload(bundle.payload, f"{where}: payload")
    ser = statement.serialization
    signed = {r.name: r for r in statement.resources}
    signed_files = sorted({statement.file_of(n) for n in signed})
    _check_shape(statement, root, user_ignores, where)

    # Step 4: walk the model as the serialization says, and compare names first.
    implicit = _git_ignores(signed_files)
    sig_rel = _relative_inside(sig_path, root) if root.is_dir() else None
    if sig_rel is not None:
        implicit.append(sig_rel)
    tree = scan(root, ser, implicit_ignores=implicit, user_ignores=user_ignores)
    errors, common = _compare_names(statement, tree)

    # Step 5: hash what both sides name, and compare digests.
    actual = compute_digests(common, ser, threads=threads, progress=progress)
    for name in sorted(common):
        if actual[name] != signed[name].digest:
            errors.append(
                digest_mismatch(
                    str(root) if name == SINGLE_FILE else name,  # a single-file model: its path
                    statement.serialization.hash_type,
                    signed[name].digest,
                    actual[name],
                )
            )
    raise_all(sorted(errors, key=lambda e: e.where))  # one line per file, in path order

    return OmsVerification(
        model_dir=root,
        signature=sig_path,
        model_name=statement.model_name,
        method=ser.method,
        shard_size=ser.shard_size,
        root_digest=statement.root_digest,
        payload_sha256=hashlib.sha256(bundle.payload).hexdigest(),
        payload_canonical=_is_canonical(bundle.payload),
        key_hinted=bundle.key_hint is not None,
        files=tuple(signed_files),
        resources=len(signed),
        ignored=tree.ignored,
        signer=label,
        channel=channel,
        certificate_subject=subject,
        legacy_format=statement.legacy,
        warnings=warnings,
    )


def _user_ignores(root: Path, paths: Sequence[str | Path]) -> list[str]:
    """``--ignore-paths`` as model-relative POSIX paths (model_signing resolves from the cwd)."""
    out = []
    for p in paths:
        if root.is_file():
            raise UsageError("--ignore-paths", f"{root} is a single file: nothing to ignore")
        rel = _relative_inside(Path(p), root)
        if rel is None or rel in ("", "."):
            raise UsageError(
                "--ignore-paths",
                f"expected a path inside the model {root}, found {str(p)!r}"
                if rel is None
                else f"{str(p)!r} would exclude the whole model",
            )
        out.append(rel)
    return out


def _check_shape(
    statement: OmsStatement, root: Path, user_ignores: Sequence[str], where: str
) -> None:
    """A signature and a model of the same kind; no signed file hidden by any ignore entry."""
    if statement.single_file != root.is_file():
        kind = "a single file" if statement.single_file else "a directory"
        found = "a directory" if root.is_dir() else "a single file"
        raise DigestMismatchError(str(root), f"the signature covers {kind}, found {found}")
    ser = statement.serialization
    for i, r in enumerate(statement.resources):
        fname = statement.file_of(r.name)
        signed_away = [p for p in ser.ignore_paths if fname == p or fname.startswith(p + "/")]
        if signed_away:
            raise InvalidManifest(
                f"predicate.resources.{i}.name",
                f"{r.name!r} is also excluded by ignore_paths entry {signed_away[0]!r}",
                path=f"{where}: payload",
            )
        asked = [p for p in user_ignores if fname == p or fname.startswith(p + "/")]
        if asked:
            raise UsageError(
                "--ignore-paths", f"{asked[0]!r} would skip {fname!r}, which the signature covers"
            )


def _compare_names(
    statement: OmsStatement, tree: ModelTree
) -> tuple[list[SonicRegistryError], dict[str, ModelFile]]:
    """Match signed resource names with the ones this tree yields, file by file.

    Returns one problem per file that is missing, unlisted or resized, and the
    resources both sides name (the only ones worth hashing).
    """
    ser = statement.serialization
    signed_by_file: dict[str, set[str]] = {}
    for r in statement.resources:
        signed_by_file.setdefault(statement.file_of(r.name), set()).add(r.name)
    on_disk = {f.name: f for f in tree.files}
    errors: list[SonicRegistryError] = []
    common: dict[str, ModelFile] = {}
    for fname in sorted(set(signed_by_file) | set(on_disk)):
        want, f = signed_by_file.get(fname), on_disk.get(fname)
        if f is None:
            errors.append(DigestMismatchError(fname, "signed file is missing"))
        elif want is None:
            if ser.method == "shards" and f.size == 0:
                # Zero bytes = zero shards: invisible to a shards signature.
                errors.append(
                    UnlistedFileError(
                        fname,
                        "empty file not covered by the signature (shards serialization "
                        "records nothing for 0 bytes, so model_signing would accept it)",
                    )
                )
            else:
                errors.append(
                    UnlistedFileError(
                        fname,
                        "not covered by the signature (if it is not part of the model, "
                        "leave it out with --ignore-paths, as model_signing does)",
                    )
                )
        elif len(want) != resource_count(f, ser) or set(names_for(f, ser)) != want:
            # Count first: names are built only when they can match the signed
            # ones, so a tiny shard_size cannot make us list billions of names.
            signed_size = max(int(n.rsplit(":", 1)[1]) for n in want)
            if signed_size != f.size:
                detail = f"expected {signed_size} bytes (signed shards), found {f.size} bytes"
            else:
                detail = f"signed shards do not split the file into {ser.shard_size}-byte slices"
            errors.append(DigestMismatchError(fname, detail))
        else:
            common.update((n, f) for n in want)
    return errors, common


def _is_canonical(payload: bytes) -> bool:
    from ..canonical import loads_strict

    try:
        return canonical_bytes(loads_strict(payload)) == payload
    except SonicRegistryError:
        return False


def export_oms(
    model_dir: str | Path,
    key: str | Path | PrivateKey,
    out: str | Path,
    *,
    passphrase: bytes | None = None,
    shard_size: int | None = None,
    ignore_paths: Sequence[str] = (),
    allow_symlinks: bool = False,
    model_name: str | None = None,
    threads: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> OmsExport:
    """Sign ``model_dir`` (a directory or one file) as model_signing would; write ``out``.

    ``shard_size`` switches to shards serialization (note: the ``model_signing
    verify key`` CLI always re-hashes per file, so only its Python API verifies
    shards signatures). The payload we sign is RFC 8785 canonical JSON.
    """
    root = Path(model_dir)
    out_path = Path(out)
    if not (root.is_dir() or root.is_file()):
        raise UnreadableInputError(str(root), "expected a model directory or file")
    signer = (
        key
        if isinstance(key, PrivateKey)
        else load_private_key(key, passphrase, accepted=ECDSA_ALGORITHMS)
    )
    require_ecdsa(signer.algorithm, "--key" if isinstance(key, PrivateKey) else str(key))
    if shard_size is not None and (isinstance(shard_size, bool) or shard_size <= 0):
        raise UsageError("--shard-size", f"expected a positive integer, found {shard_size}")
    ignores = _export_ignores(root, out_path, ignore_paths)
    ser = Serialization(
        method="files" if shard_size is None else "shards",
        shard_size=shard_size,
        allow_symlinks=allow_symlinks,
        ignore_paths=ignores,
    )
    tree = scan(root, ser)
    _check_exportable(tree, ser)
    names = expected_names(tree, ser)
    digests = compute_digests(names, ser, threads=threads, progress=progress)
    resources = [Resource(n, d, ser.resource_algorithm) for n, d in digests.items()]
    name = model_name if model_name is not None else root.resolve().name
    statement = build_statement(name, ser, resources)
    payload = canonical_bytes(statement)
    signature = signer.sign(pae(PAYLOAD_TYPE, payload))
    atomic_write_bytes(out_path, build_bundle(payload, signature, key_hint(signer.public)))
    return OmsExport(
        out=out_path,
        model_name=name,
        method=ser.method,
        shard_size=shard_size,
        root_digest=statement["subject"][0]["digest"]["sha256"],
        payload_sha256=hashlib.sha256(payload).hexdigest(),
        files=tuple(sorted(f.name for f in tree.files)),
        resources=len(resources),
        ignored=tree.ignored,
    )


def _export_ignores(root: Path, out_path: Path, ignore_paths: Sequence[str]) -> tuple[str, ...]:
    """What model_signing's CLI records as ignored: the caller's ignores, the git
    paths, and the signature itself when it is written inside the model. A
    single-file model (signed as ``.``) has nothing to ignore."""
    if root.is_file():
        if ignore_paths:
            raise UsageError("--ignore", f"{root} is a single file: nothing to ignore")
        if out_path.resolve() == root.resolve():
            raise UsageError("--out", f"{out_path} is the model itself; refusing to overwrite it")
        return ()
    ignores = []
    for i, p in enumerate(ignore_paths):
        norm = p.rstrip("/")
        if norm in ("", "."):
            raise UsageError("--ignore", f"{p!r} would exclude the whole model")
        ignores.append(str(check_relative_path(norm, f"--ignore.{i}", "")))
    ignores.extend(GIT_PATHS)
    out_rel = _relative_inside(out_path, root)
    if out_rel is not None:
        from ..formats import is_weight_file

        # The output is left out of the signature, so a typo must not turn a
        # weight file into an unsigned, overwritten "signature".
        if out_path.is_file() and is_weight_file(out_path):
            raise UsageError(
                "--out", f"{out_path} is a weight file of the model; refusing to overwrite it"
            )
        ignores.append(out_rel)
    return tuple(sorted(set(ignores)))


def _check_exportable(tree: ModelTree, ser: Serialization) -> None:
    """Refuse to write a signature that could not protect every file."""
    if ser.method != "shards":
        return
    errors: list[SonicRegistryError] = []
    for f in tree.files:
        if f.size == 0:
            errors.append(
                UsageError(
                    f.name,
                    "empty file: shards serialization cannot record it (0 bytes = 0 shards); "
                    "export per file instead (omit --shard-size)",
                )
            )
        if ":" in f.name:
            errors.append(
                UsageError(f.name, "a ':' in the path cannot be named in shards serialization")
            )
    raise_all(errors)
