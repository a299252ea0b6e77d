"""The OMS signature file: a Sigstore bundle around a DSSE envelope around an in-toto Statement.

Layout written by ``model_signing sign key`` (1.x) and by :func:`build_bundle`::

    {"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
     "verificationMaterial": {"publicKey": {"hint": "<sha256 of the public PEM>"},
                              "tlogEntries": []},
     "dsseEnvelope": {"payload": "<base64 Statement>",
                      "payloadType": "application/vnd.in-toto+json",
                      "signatures": [{"sig": "<base64 DER ECDSA>", "keyid": ""}]}}

The Statement's single subject is the model name with a *root digest*: the
sha256 of the concatenated raw digests of every resource, in the order the
resources are listed. The predicate carries ``resources`` (``{name, algorithm,
digest}``) and the ``serialization`` block that says how to recompute them.

Parsing is strict on purpose: every field is type-checked and a missing or
mistyped one is one :class:`InvalidManifest` line naming it. model_signing
itself indexes into plain dicts and fails with a ``KeyError``/``TypeError``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from ..canonical import canonical_bytes, loads_strict
from ..errors import InvalidManifest
from ..hexdigest import is_sha256_hex
from ..signing import b64decode_dsse

__all__ = [
    "BUNDLE_MEDIA_TYPE",
    "GIT_PATHS",
    "PREDICATE_TYPE",
    "PREDICATE_TYPE_V01",
    "SINGLE_FILE",
    "OmsBundle",
    "OmsStatement",
    "Resource",
    "Serialization",
    "build_bundle",
    "build_statement",
    "check_relative_path",
    "root_digest",
    "shard_name",
    "sort_key",
]

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
#: model_signing 0.2's statement: one subject per file, no serialization block.
PREDICATE_TYPE_V01 = "https://model_signing/Digests/v0.1"
#: The resource name model_signing gives a model that is a single file.
SINGLE_FILE = "."
#: model_signing always leaves these out of a model (unless told otherwise).
GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")

#: Most certificates a bundle's chain may carry (leaf, intermediates).
_MAX_CHAIN = 16
_OFFSET = re.compile(r"0|[1-9][0-9]*")
_MAX_EXACT_FLOAT = 2.0**53
_SERIALIZATION_KEYS = frozenset(
    {"method", "hash_type", "shard_size", "allow_symlinks", "ignore_paths"}
)


def _expect(cond: bool, field: str, message: str, where: str) -> None:
    if not cond:
        raise InvalidManifest(field, message, path=where)


def _typename(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def check_relative_path(name: str, field: str, where: str) -> PurePosixPath:
    """A POSIX path inside the model: no absolute paths, ``..``, ``.`` or empty parts.

    model_signing never writes such names; a signature that carries one is
    either corrupt or crafted to reach outside the model directory.
    """
    _expect(isinstance(name, str) and name != "", field, "expected a relative path", where)
    parts = name.split("/")
    bad = name.startswith("/") or "\\" in name or "\x00" in name
    bad = bad or any(p in ("", ".", "..") for p in parts)
    _expect(
        not bad,
        field,
        f"expected a relative POSIX path inside the model, found {name!r}",
        where,
    )
    return PurePosixPath(name)


def _shard_size(value: Any, method: str, field: str, where: str) -> int | None:
    """The shard size as an exact positive integer.

    model_signing 1.1 stores the predicate in a protobuf ``Struct``, whose
    numbers are doubles, so its shards signatures say ``"shard_size": 1000.0``
    (and its own verifier then crashes on ``range()`` of a float). We accept a
    float only when it is a whole number that a double holds exactly; a
    fractional, negative or over-2**53 size has no single meaning and is refused.
    """
    if method != "shards":
        _expect(value is None, field, "expected no shard_size for method 'files'", where)
        return None
    _expect(value is not None, field, "expected a positive integer, found nothing", where)
    if isinstance(value, float) and value.is_integer() and 0 < value <= _MAX_EXACT_FLOAT:
        return int(value)
    _expect(
        isinstance(value, int) and not isinstance(value, bool) and value > 0,
        field,
        f"expected a positive integer, found {value!r} ({_typename(value)})",
        where,
    )
    return int(value)


@dataclass(frozen=True)
class Serialization:
    """How the resources were computed: per file or per ``shard_size`` slice."""

    method: str
    hash_type: str = "sha256"
    shard_size: int | None = None
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = ()

    @property
    def resource_algorithm(self) -> str:
        """The ``algorithm`` of every resource: model_signing names shard digests apart."""
        if self.method == "shards":
            return f"{self.hash_type}-sharded-{self.shard_size}"
        return self.hash_type

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "method": self.method,
            "hash_type": self.hash_type,
            "allow_symlinks": self.allow_symlinks,
        }
        if self.shard_size is not None:
            out["shard_size"] = self.shard_size
        if self.ignore_paths:
            out["ignore_paths"] = list(self.ignore_paths)
        return out

    @classmethod
    def from_dict(cls, doc: Any, where: str) -> Serialization:
        f = "predicate.serialization"
        _expect(isinstance(doc, dict), f, f"expected an object, found {_typename(doc)}", where)
        unknown = sorted(set(doc) - _SERIALIZATION_KEYS)
        # An unknown key could change how resources are computed; guessing is unsafe.
        # The key is the signer's text: quote it (repr) when it is not printable, so a
        # newline or escape code in it cannot break the one-line error.
        key = (unknown[0] if unknown[0].isprintable() else repr(unknown[0])) if unknown else ""
        _expect(not unknown, f"{f}.{key}", "unknown key", where)
        method = doc.get("method")
        _expect(
            method in ("files", "shards"),
            f"{f}.method",
            f"expected 'files' or 'shards', found {method!r}",
            where,
        )
        hash_type = doc.get("hash_type")
        _expect(
            hash_type == "sha256",
            f"{f}.hash_type",
            f"expected 'sha256' (the only hash this verifier recomputes), found {hash_type!r}",
            where,
        )
        allow = doc.get("allow_symlinks")
        _expect(
            isinstance(allow, bool),
            f"{f}.allow_symlinks",
            f"expected true or false, found {allow!r}",
            where,
        )
        shard_size = _shard_size(doc.get("shard_size"), method, f"{f}.shard_size", where)
        ignore = doc.get("ignore_paths", [])
        _expect(
            isinstance(ignore, list),
            f"{f}.ignore_paths",
            f"expected a list of paths, found {_typename(ignore)}",
            where,
        )
        paths = []
        for i, p in enumerate(ignore):
            field = f"{f}.ignore_paths.{i}"
            _expect(isinstance(p, str), field, f"expected a path, found {_typename(p)}", where)
            # model_signing records directories without a trailing slash, but a
            # hand-written "dir/" means the same thing.
            stripped = p.rstrip("/") if p not in ("/", "") else p
            _expect(
                stripped not in ("", "."),
                field,
                f"{p!r} would exclude the whole model from verification",
                where,
            )
            paths.append(str(check_relative_path(stripped, field, where)))
        return cls(
            method=method,
            hash_type=hash_type,
            shard_size=shard_size,
            allow_symlinks=allow,
            ignore_paths=tuple(paths),
        )


@dataclass(frozen=True)
class Resource:
    """One signed item: a file (``path``) or a shard (``path:start:end``)."""

    name: str
    digest: str
    algorithm: str = "sha256"

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "algorithm": self.algorithm, "digest": self.digest}


def shard_name(path: str, start: int, end: int) -> str:
    return f"{path}:{start}:{end}"


def _split_shard(name: str, field: str, where: str) -> tuple[str, int, int]:
    parts = name.split(":")
    # model_signing splits on every ':', so a path containing one cannot be a shard.
    _expect(
        len(parts) == 3 and all(_OFFSET.fullmatch(x) for x in parts[1:]),
        field,
        f"expected 'path:start:end' with decimal offsets, found {name!r}",
        where,
    )
    return parts[0], int(parts[1]), int(parts[2])


def sort_key(name: str, method: str) -> tuple[tuple[str, ...], int, int]:
    """model_signing's resource order: path parts, then numeric start and end.

    It sorts ``PurePosixPath`` objects (part by part, so ``a/b`` < ``a-c``) and,
    for shards, integer offsets (so ``:2:3`` < ``:10:11``); plain string order
    would differ. Only the root digest depends on the order, and it is
    recomputed from whatever order is signed, but matching it byte for byte
    keeps our output identical to theirs.
    """
    if method == "shards":
        path, start, end = name.rsplit(":", 2)
        return tuple(path.split("/")), int(start), int(end)
    return tuple(name.split("/")), 0, 0


def root_digest(resources: Iterable[Resource]) -> str:
    h = hashlib.sha256()
    for r in resources:
        h.update(bytes.fromhex(r.digest))
    return h.hexdigest()


@dataclass(frozen=True)
class OmsStatement:
    """The signed in-toto Statement, checked for internal consistency."""

    model_name: str
    root_digest: str
    serialization: Serialization
    resources: tuple[Resource, ...]
    #: model_signing 0.2's format (``Digests/v0.1``): no model name, no serialization block
    legacy: bool = False

    def file_of(self, name: str) -> str:
        """The file path a resource name refers to."""
        if self.serialization.method == "shards":
            return name.rsplit(":", 2)[0]
        return name

    @classmethod
    def from_payload(cls, payload: bytes, where: str) -> OmsStatement:
        """Parse the *exact signed bytes*; never a re-serialisation of them.

        model_signing's payload is protobuf-printed JSON (indented, not RFC 8785
        canonical), so canonical form cannot be required. What matters is that
        the bytes we interpret are the bytes that were signed, and that they have
        one meaning: duplicate keys, NaN and over-deep nesting are refused
        (``loads_strict``), because two JSON parsers may resolve those differently.
        """
        doc = loads_strict(payload, where=where)
        _expect(isinstance(doc, dict), "payload", "expected a JSON object", where)
        _expect(
            doc.get("_type") == STATEMENT_TYPE,
            "_type",
            f"expected {STATEMENT_TYPE!r}, found {doc.get('_type')!r}",
            where,
        )
        ptype = doc.get("predicateType")
        if ptype == PREDICATE_TYPE_V01:
            return cls._from_v01(doc, where)
        _expect(
            ptype == PREDICATE_TYPE,
            "predicateType",
            f"expected {PREDICATE_TYPE!r}, found {ptype!r}",
            where,
        )
        subjects = doc.get("subject")
        _expect(
            isinstance(subjects, list) and len(subjects) == 1,
            "subject",
            "expected exactly one subject (the model)",
            where,
        )
        subject = subjects[0]
        _expect(isinstance(subject, dict), "subject.0", "expected an object", where)
        name = subject.get("name")
        _expect(isinstance(name, str), "subject.0.name", "expected a string", where)
        digest = subject.get("digest")
        root = digest.get("sha256") if isinstance(digest, dict) else None
        _expect(
            is_sha256_hex(root),
            "subject.0.digest.sha256",
            "expected 64 lowercase hex digits",
            where,
        )
        predicate = doc.get("predicate")
        _expect(isinstance(predicate, dict), "predicate", "expected an object", where)
        serialization = Serialization.from_dict(predicate.get("serialization"), where)
        items = predicate.get("resources")
        _expect(isinstance(items, list), "predicate.resources", "expected a list", where)
        resources = []
        seen: set[str] = set()
        paths: set[str] = set()
        for i, item in enumerate(items):
            field = f"predicate.resources.{i}"
            _expect(isinstance(item, dict), field, "expected an object", where)
            rname, alg, value = item.get("name"), item.get("algorithm"), item.get("digest")
            _expect(isinstance(rname, str), f"{field}.name", "expected a string", where)
            _expect(
                alg == serialization.resource_algorithm,
                f"{field}.algorithm",
                f"expected {serialization.resource_algorithm!r}, found {alg!r}",
                where,
            )
            _expect(
                is_sha256_hex(value),
                f"{field}.digest",
                "expected 64 lowercase hex digits",
                where,
            )
            path = rname
            if serialization.method == "shards":
                path, start, end = _split_shard(rname, f"{field}.name", where)
                _expect(start < end, f"{field}.name", f"empty shard {rname!r}", where)
            if path != SINGLE_FILE:  # the one name of a single-file model
                check_relative_path(path, f"{field}.name", where)
            _expect(rname not in seen, f"{field}.name", f"duplicate resource {rname!r}", where)
            seen.add(rname)
            paths.add(path)
            resources.append(Resource(rname, value, alg))
        _expect(
            SINGLE_FILE not in paths or paths == {SINGLE_FILE},
            "predicate.resources",
            "expected either one single-file model ('.') or relative paths, found both",
            where,
        )
        # The subject digest commits to the list; a mismatch means the statement
        # was assembled inconsistently (model_signing refuses it too).
        found = root_digest(resources)
        _expect(
            found == root,
            "subject.0.digest.sha256",
            f"expected the sha256 over all resource digests ({found}), found {root}",
            where,
        )
        return cls(name, str(root), serialization, tuple(resources))

    @classmethod
    def _from_v01(cls, doc: Any, where: str) -> OmsStatement:
        """model_signing 0.2's statement, as model_signing itself still reads it.

        Each subject is a file with its sha256; the serialization is implied
        (per file, sha256, no symlinks). There is no root digest to check, so
        one is computed over the subjects in the signed order.
        """
        subjects = doc.get("subject")
        _expect(
            isinstance(subjects, list) and len(subjects) > 0,
            "subject",
            "expected a list of files",
            where,
        )
        resources: list[Resource] = []
        seen: set[str] = set()
        for i, subject in enumerate(subjects):
            field = f"subject.{i}"
            _expect(isinstance(subject, dict), field, "expected an object", where)
            name, digest = subject.get("name"), subject.get("digest")
            value = digest.get("sha256") if isinstance(digest, dict) else None
            _expect(isinstance(name, str), f"{field}.name", "expected a string", where)
            check_relative_path(name, f"{field}.name", where)
            _expect(name not in seen, f"{field}.name", f"duplicate subject {name!r}", where)
            _expect(
                is_sha256_hex(value),
                f"{field}.digest.sha256",
                "expected 64 lowercase hex digits",
                where,
            )
            seen.add(name)
            resources.append(Resource(name, str(value)))
        ser = Serialization(method="files")
        return cls("", root_digest(resources), ser, tuple(resources), legacy=True)

    @property
    def single_file(self) -> bool:
        """Whether the signature covers one file given as the model (resource name ``.``)."""
        return all(self.file_of(r.name) == SINGLE_FILE for r in self.resources)


def build_statement(
    model_name: str, serialization: Serialization, resources: Iterable[Resource]
) -> dict[str, Any]:
    ordered = sorted(resources, key=lambda r: sort_key(r.name, serialization.method))
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": model_name, "digest": {"sha256": root_digest(ordered)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": serialization.to_dict(),
            "resources": [r.to_dict() for r in ordered],
        },
    }


def _b64(value: Any, field: str, where: str) -> bytes:
    """Base64 as DSSE and protobuf JSON allow (either alphabet, padding optional)."""
    _expect(isinstance(value, str), field, "expected a base64 string", where)
    return b64decode_dsse(value, field=field, where=where)


@dataclass(frozen=True)
class OmsBundle:
    """The parts of a key-signed Sigstore bundle that verification needs."""

    payload: bytes
    payload_type: str
    signature: bytes
    key_hint: str | None
    #: DER certificates, leaf first, of a certificate signature; () for a key signature
    certificates: tuple[bytes, ...] = ()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> OmsBundle:
        doc = loads_strict(data, where=where)
        _expect(isinstance(doc, dict), "", "expected a Sigstore bundle (JSON object)", where)
        media = doc.get("mediaType")
        _expect(
            media == BUNDLE_MEDIA_TYPE,
            "mediaType",
            f"expected {BUNDLE_MEDIA_TYPE!r}, found {media!r}",
            where,
        )
        material = doc.get("verificationMaterial")
        _expect(isinstance(material, dict), "verificationMaterial", "expected an object", where)
        if "certificate" in material:
            raise InvalidManifest(
                "verificationMaterial.certificate",
                "a Sigstore keyless bundle needs the public Sigstore trust root to verify, "
                "which this offline verifier does not use; verify it with `model_signing "
                "verify sigstore` (key and --certificate-chain signatures verify here)",
                path=where,
            )
        tlog = material.get("tlogEntries", [])
        _expect(
            tlog == [],
            "verificationMaterial.tlogEntries",
            "expected no transparency-log entries (key or certificate signature)",
            where,
        )
        hint, certificates = _key_material(material, where)
        _expect(
            "messageSignature" not in doc,
            "messageSignature",
            "expected a DSSE envelope, found a message signature",
            where,
        )
        env = doc.get("dsseEnvelope")
        _expect(isinstance(env, dict), "dsseEnvelope", "expected an object", where)
        ptype = env.get("payloadType")
        _expect(
            ptype == PAYLOAD_TYPE,
            "dsseEnvelope.payloadType",
            f"expected {PAYLOAD_TYPE!r}, found {ptype!r}",
            where,
        )
        payload = _b64(env.get("payload"), "dsseEnvelope.payload", where)
        sigs = env.get("signatures")
        # model_signing checks signatures[0] only; a second one would be
        # silently unchecked, so exactly one is accepted.
        _expect(
            isinstance(sigs, list) and len(sigs) == 1 and isinstance(sigs[0], dict),
            "dsseEnvelope.signatures",
            "expected exactly one signature",
            where,
        )
        sig = _b64(sigs[0].get("sig"), "dsseEnvelope.signatures.0.sig", where)
        return cls(payload, ptype, sig, hint or None, certificates)


def _key_material(material: Any, where: str) -> tuple[str | None, tuple[bytes, ...]]:
    """(key hint, DER certificates leaf first): what names the signer, never trusted as is.

    A key signature carries ``publicKey`` (a ``hint`` since model_signing 1.1,
    the PEM as ``rawBytes`` before; the verifier's own key decides either way);
    a certificate signature carries ``x509CertificateChain``, leaf first.
    """
    chain = material.get("x509CertificateChain")
    if chain is not None:
        f = "verificationMaterial.x509CertificateChain.certificates"
        certs: Any = chain.get("certificates") if isinstance(chain, dict) else None
        _expect(
            isinstance(certs, list) and 0 < len(certs) <= _MAX_CHAIN,
            f,
            f"expected 1 to {_MAX_CHAIN} certificates, leaf first",
            where,
        )
        ders = []
        for i, cert in enumerate(certs):
            _expect(isinstance(cert, dict), f"{f}.{i}", "expected an object", where)
            ders.append(_b64(cert.get("rawBytes"), f"{f}.{i}.rawBytes", where))
        return None, tuple(ders)
    key = material.get("publicKey")
    _expect(
        isinstance(key, dict),
        "verificationMaterial.publicKey",
        "expected an object (key signature) or x509CertificateChain (certificate signature)",
        where,
    )
    hint = key.get("hint")
    _expect(
        hint is None or isinstance(hint, str),
        "verificationMaterial.publicKey.hint",
        "expected a string",
        where,
    )
    return hint or None, ()


def build_bundle(payload: bytes, signature: bytes, key_hint: str) -> bytes:
    doc: Mapping[str, Any] = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key_hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode("ascii"),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(signature).decode("ascii"), "keyid": ""}],
        },
    }
    return canonical_bytes(doc)
