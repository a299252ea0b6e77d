"""Certificate signatures (``model_signing sign certificate``): the leaf, its chain, the roots.

The bundle carries the signing certificate (leaf) first, then intermediates.
The verifier gives the roots it trusts (``--certificate-chain CA.pem``, once
or more); the leaf is validated against them with ``cryptography``'s X.509
path validation, and only then is its public key used to check the signature.

Where this follows model_signing rather than the Web PKI defaults, on purpose
(model_signing validates with OpenSSL's ``X509Store``, not a Web PKI policy):

* a leaf with ``basicConstraints CA:TRUE`` is accepted (upstream's own test
  leaf has it), with a warning; ``cryptography``'s default end-entity policy
  refuses it;
* the leaf needs no subjectAltName and no particular extendedKeyUsage, but it
  must be allowed to sign: keyUsage digitalSignature or extendedKeyUsage
  codeSigning, exactly model_signing's rule;
* the chain is checked at the leaf's notBefore time, as model_signing does: a
  key-signed bundle carries no trusted signing time. A leaf expired today is
  still accepted, with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification as xv
from cryptography.x509.oid import ExtendedKeyUsageOID

from ..errors import InvalidKeyError, InvalidManifest, UnreadableInputError, UnsignedReleaseError
from ..fileio import read_bounded
from ..signing import PublicKey, public_key_from_pem

__all__ = ["VerifiedLeaf", "load_roots", "verify_leaf"]

#: A PEM bundle of a few hundred roots (certifi's) is ~300 KB.
MAX_ROOTS_FILE = 4 * 1024 * 1024


@dataclass(frozen=True)
class VerifiedLeaf:
    """A signing certificate whose chain leads to a given root."""

    public: PublicKey
    subject: str
    warnings: tuple[str, ...]


def load_roots(paths: Sequence[str | Path]) -> list[x509.Certificate]:
    """Every certificate in the given PEM files: the roots the verifier trusts."""
    roots: list[x509.Certificate] = []
    for path in paths:
        data = read_bounded(
            path, MAX_ROOTS_FILE, kind="PEM certificate file", missing="no such certificate file"
        )
        try:
            found = x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise InvalidKeyError(
                str(path), "expected PEM certificates, found unparseable data"
            ) from exc
        roots.extend(found)
    if not roots:
        raise UnreadableInputError("--certificate-chain", "expected at least one PEM certificate")
    return roots


def _ee_policy() -> xv.ExtensionPolicy:
    """The Web PKI end-entity policy, relaxed where model_signing (OpenSSL) is laxer."""
    agnostic = xv.Criticality.AGNOSTIC
    return (
        xv.ExtensionPolicy.webpki_defaults_ee()
        .may_be_present(x509.BasicConstraints, agnostic, None)
        .may_be_present(x509.ExtendedKeyUsage, agnostic, None)
        .may_be_present(x509.SubjectAlternativeName, agnostic, None)
    )


def _may_sign(leaf: x509.Certificate) -> bool:
    """model_signing's rule: keyUsage digitalSignature, or extendedKeyUsage codeSigning."""
    try:
        if leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            return True
    except x509.ExtensionNotFound:
        pass
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CODE_SIGNING in eku


def _is_ca(leaf: x509.Certificate) -> bool:
    try:
        return leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def verify_leaf(
    chain: Sequence[bytes], roots: Sequence[x509.Certificate], *, where: str
) -> VerifiedLeaf:
    """Validate the bundle's leaf (DER, leaf first) against ``roots``; return its key."""
    field = "verificationMaterial.x509CertificateChain.certificates"
    certs: list[x509.Certificate] = []
    for i, der in enumerate(chain):
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError as exc:
            raise InvalidManifest(
                f"{field}.{i}", "expected a DER X.509 certificate", path=where
            ) from exc
    leaf, intermediates = certs[0], certs[1:]
    subject = leaf.subject.rfc4514_string()
    verifier = (
        xv.PolicyBuilder()
        .store(xv.Store(list(roots)))
        .time(leaf.not_valid_before_utc)
        .extension_policies(
            ca_policy=xv.ExtensionPolicy.webpki_defaults_ca(), ee_policy=_ee_policy()
        )
        .build_client_verifier()
    )
    try:
        verifier.verify(leaf, intermediates)
    except xv.VerificationError as exc:
        raise UnsignedReleaseError(
            where,
            f"signing certificate {subject} does not chain to a given --certificate-chain "
            f"root: {exc}",
        ) from exc
    if not _may_sign(leaf):
        raise UnsignedReleaseError(
            where,
            f"signing certificate {subject} may not sign: expected keyUsage digitalSignature "
            "or extendedKeyUsage codeSigning",
        )
    pem = leaf.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    public = public_key_from_pem(pem, where=f"{where}: signing certificate")
    warnings = []
    if _is_ca(leaf):
        warnings.append(
            f"signing certificate {subject} has basicConstraints CA:TRUE; accepted as "
            "model_signing does, though a signing (end-entity) certificate should not be a CA"
        )
    expiry = leaf.not_valid_after_utc
    if expiry <= datetime.now(UTC):
        warnings.append(
            f"signing certificate {subject} expired at {expiry:%Y-%m-%dT%H:%M:%SZ} "
            "(the chain is checked at its notBefore time, as model_signing does)"
        )
    return VerifiedLeaf(public, subject, tuple(warnings))
