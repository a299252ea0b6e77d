"""Keys (Ed25519, ECDSA P-256/P-384/P-521), keyids, and DSSE envelopes.

A thin, tested layer over ``cryptography``: DSSE itself is a few lines (PAE +
base64), and owning them keeps the verify path free of extra dependencies.
Signatures always cover ``PAE(payloadType, payload)`` over the exact payload
bytes, never re-serialised JSON, so an envelope whose JSON was pretty-printed
or reordered still verifies, and one whose payload changed by a byte does not.

    >>> pae("application/vnd.in-toto+json", b"{}")
    b'DSSEv1 28 application/vnd.in-toto+json 2 {}'
"""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from .canonical import b64decode_dsse, canonical_sha256, loads_strict
from .constants import MAX_ENVELOPE_BYTES
from .errors import InvalidKeyError, InvalidManifest
from .fileio import atomic_write_bytes, read_bounded
from .schema import validate

__all__ = [
    "ALGORITHMS",
    "KEY_TYPES_TEXT",
    "PAYLOAD_TYPE",
    "Envelope",
    "PrivateKey",
    "PublicKey",
    "Signature",
    "b64decode_dsse",
    "describe_keys",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "pae",
    "public_key_from_pem",
    "save_private_key",
]

PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_KEY_FILE = 64 * 1024

# CLI name -> (TUF keytype, TUF scheme)
ALGORITHMS = {
    "ed25519": ("ed25519", "ed25519"),
    "ecdsa-p256": ("ecdsa", "ecdsa-sha2-nistp256"),
    "ecdsa-p384": ("ecdsa", "ecdsa-sha2-nistp384"),
    "ecdsa-p521": ("ecdsa", "ecdsa-sha2-nistp521"),
}
#: ECDSA algorithm -> (curve, the hash it signs with). The hash follows the
#: curve size, as model_signing and TUF's ecdsa-sha2-nistp* schemes do.
_ECDSA: dict[str, tuple[ec.EllipticCurve, hashes.HashAlgorithm]] = {
    "ecdsa-p256": (ec.SECP256R1(), hashes.SHA256()),
    "ecdsa-p384": (ec.SECP384R1(), hashes.SHA384()),
    "ecdsa-p521": (ec.SECP521R1(), hashes.SHA512()),
}


def describe_keys(algorithms: Collection[str]) -> str:
    """What a place accepts, worded for its refusals: ``an Ed25519 or ECDSA P-256/P-384 key``."""
    curves = "/".join(f"P-{a[-3:]}" for a in ALGORITHMS if a in algorithms and a in _ECDSA)
    kinds = ["Ed25519"] if "ed25519" in algorithms else []
    kinds += [f"ECDSA {curves}"] if curves else []
    return f"an {' or '.join(kinds)} key"


#: What a key may be anywhere a key is read, worded for refusals.
KEY_TYPES_TEXT = describe_keys(ALGORITHMS)

_PublicKeyTypes = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
_PrivateKeyTypes = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE pre-authentication encoding: what a signature actually covers."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


def _algorithm_of(key: object, where: str, accepted: Collection[str]) -> str:
    """Our name for the key's algorithm, if ``accepted``; else one line listing what is."""
    found = type(key).__name__
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        found = "ed25519"
    elif isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        names = [a for a, (curve, _) in _ECDSA.items() if key.curve.name == curve.name]
        found = names[0] if names else f"an ECDSA key on curve {key.curve.name}"
    if found not in accepted:
        raise InvalidKeyError(where, f"expected {describe_keys(accepted)}, found {found}")
    return found


def _ecdsa(algorithm: str) -> ec.ECDSA:
    """The ECDSA signature algorithm for a curve: SHA-256, -384 or -512 by curve size."""
    return ec.ECDSA(_ECDSA[algorithm][1])


@dataclass(frozen=True)
class PublicKey:
    """A verification key; ``keyid`` is the sha256 of its canonical TUF-style dict."""

    key: _PublicKeyTypes
    algorithm: str

    @property
    def keytype(self) -> str:
        return ALGORITHMS[self.algorithm][0]

    @property
    def scheme(self) -> str:
        return ALGORITHMS[self.algorithm][1]

    def to_pem(self) -> str:
        return self.key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def to_key_dict(self) -> dict[str, Any]:
        return {"keytype": self.keytype, "scheme": self.scheme, "keyval": {"public": self.to_pem()}}

    @functools.cached_property
    def keyid(self) -> str:
        """Computed once per key (PEM encoding, canonical JSON, SHA-256): a trust decision
        asks for it several times per signature, thousands of times in a registry refresh."""
        return canonical_sha256(self.to_key_dict())

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            if isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, data)
            else:
                self.key.verify(signature, data, _ecdsa(self.algorithm))
        except (InvalidSignature, ValueError):
            return False
        return True

    def could_have_signed(self, signature: bytes) -> bool:
        """Whether ``signature`` has this key type's shape (64 raw bytes, or a DER sequence).

        A cheap filter for keyid-less signatures, so only keys of a matching
        algorithm are tried; :meth:`verify` still decides.
        """
        if isinstance(self.key, ed25519.Ed25519PublicKey):
            return len(signature) == 64
        return signature[:1] == b"\x30"


@dataclass(frozen=True)
class PrivateKey:
    """A signing key and the public key that verifies it."""

    key: _PrivateKeyTypes
    algorithm: str

    @property
    def public(self) -> PublicKey:
        return PublicKey(self.key.public_key(), self.algorithm)

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            return self.key.sign(data)
        return self.key.sign(data, _ecdsa(self.algorithm))

    def to_pem(self, passphrase: bytes | None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase)
            if passphrase
            else serialization.NoEncryption()
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )


def generate_key(algorithm: str = "ed25519") -> PrivateKey:
    if algorithm == "ed25519":
        return PrivateKey(ed25519.Ed25519PrivateKey.generate(), algorithm)
    if algorithm in _ECDSA:
        return PrivateKey(ec.generate_private_key(_ECDSA[algorithm][0]), algorithm)
    raise InvalidKeyError(
        "--algorithm", f"expected one of {', '.join(ALGORITHMS)}, found {algorithm!r}"
    )


def save_private_key(key: PrivateKey, path: str | Path, passphrase: bytes | None) -> None:
    """Write the private key as PKCS#8 PEM, mode 0600, atomically.

    Encrypted with ``passphrase`` when one is given. Only the private key is
    written: a caller that wants the public key on disk (``keygen``) writes
    ``key.public.to_pem()`` itself.
    """
    atomic_write_bytes(path, key.to_pem(passphrase), mode=0o600)


def _read_key_file(path: str | Path) -> bytes:
    return read_bounded(path, MAX_KEY_FILE, kind="PEM key file", missing="no such key file")


def load_private_key(
    path: str | Path, passphrase: bytes | None = None, *, accepted: Collection[str] = ALGORITHMS
) -> PrivateKey:
    """Load a PKCS#8 PEM private key, with one clear line for each way it can fail.

    ``accepted`` names the algorithms the caller can use; a refusal lists them.
    """
    where = str(path)
    data = _read_key_file(path)
    if b"PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data:
        raise InvalidKeyError(where, "expected a private key, found a public key")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError as exc:
        if passphrase:
            raise InvalidKeyError(where, "the key is not encrypted; drop the passphrase") from exc
        raise InvalidKeyError(
            where, "the key is encrypted: give its passphrase (--passphrase-env VAR)"
        ) from exc
    except ValueError as exc:
        if passphrase and b"ENCRYPTED" in data:
            raise InvalidKeyError(where, "wrong passphrase") from exc
        raise InvalidKeyError(where, "expected a PEM private key, found unparseable data") from exc
    except UnsupportedAlgorithm as exc:
        raise InvalidKeyError(where, f"expected {describe_keys(accepted)}") from exc
    algorithm = _algorithm_of(key, where, accepted)
    assert isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)
    return PrivateKey(key, algorithm)


def public_key_from_pem(
    data: bytes, *, where: str = "", accepted: Collection[str] = ALGORITHMS
) -> PublicKey:
    """A SubjectPublicKeyInfo PEM key of one of the ``accepted`` algorithms (refusals list them)."""
    if b"PRIVATE KEY-----" in data:
        raise InvalidKeyError(where, "expected a public key, found a private key")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidKeyError(where, "expected a PEM public key, found unparseable data") from exc
    algorithm = _algorithm_of(key, where, accepted)
    assert isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey)
    return PublicKey(key, algorithm)


def load_public_key(path: str | Path, *, accepted: Collection[str] = ALGORITHMS) -> PublicKey:
    return public_key_from_pem(_read_key_file(path), where=str(path), accepted=accepted)


@dataclass(frozen=True, slots=True)
class Signature:
    """One DSSE signature. ``keyid`` is an unauthenticated hint ("" when absent)."""

    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: the exact payload bytes and the signatures over their PAE."""

    payload: bytes
    payload_type: str = PAYLOAD_TYPE
    signatures: tuple[Signature, ...] = ()

    @property
    def payload_digest(self) -> str:
        """sha256 of the payload bytes: the release's manifest digest."""
        return hashlib.sha256(self.payload).hexdigest()

    def pae(self) -> bytes:
        return pae(self.payload_type, self.payload)

    def signed_by(self, key: PrivateKey) -> Envelope:
        """A copy with ``key``'s signature added (replacing an older one by the same key)."""
        sig = Signature(key.keyid, key.sign(self.pae()))
        kept = tuple(s for s in self.signatures if s.keyid != key.keyid)
        return replace(self, signatures=(*kept, sig))

    def to_dict(self) -> dict[str, Any]:
        return {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }

    def to_json(self) -> bytes:
        import json

        return (json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n").encode("ascii")

    @classmethod
    def from_json(cls, data: bytes | str, *, where: str = "release.dsse.json") -> Envelope:
        if len(data) > MAX_ENVELOPE_BYTES:
            raise InvalidManifest(
                "", f"envelope larger than {MAX_ENVELOPE_BYTES} bytes", path=where
            )
        # Per the DSSE spec: unknown fields are ignored (top level and in each
        # signature), keyid may be missing, null or empty (it is only a hint),
        # and both base64 alphabets are read. payloadType and payload stay
        # authenticated: signatures cover PAE(payloadType, payload).
        doc = loads_strict(data, where=where)
        validate(doc, "envelope", where=where)
        sigs = tuple(
            Signature(
                s.get("keyid") or "",
                b64decode_dsse(s["sig"], field=f"signatures.{i}.sig", where=where),
            )
            for i, s in enumerate(doc["signatures"])
        )
        payload = b64decode_dsse(doc["payload"], field="payload", where=where)
        return cls(payload=payload, payload_type=doc["payloadType"], signatures=sigs)

    @classmethod
    def load(cls, path: str | Path) -> Envelope:
        data = read_bounded(
            path,
            MAX_ENVELOPE_BYTES,
            kind="DSSE envelope",
            missing="no such file (run `sonic-registry sign`)",
        )
        return cls.from_json(data, where=str(path))
