"""Who signed an OMS bundle: a trusted or pinned ECDSA key, or a certificate chained to given roots.

Every key decision goes through :func:`sonic_registry.trust.get_verification_result`
(the one trust rule); certificate chains through :mod:`._oms_x509`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BadSignatureError, InvalidKeyError, SonicRegistryError, UsageError
from ..signing import PAYLOAD_TYPE, PublicKey, Signature, describe_keys, load_public_key, pae
from ..trust import TrustedKey, TrustStore, get_verification_result
from ._oms_format import PREDICATE_TYPE_V01, OmsBundle

__all__ = ["ECDSA_ALGORITHMS", "Signer", "key_hint", "require_ecdsa"]


def key_hint(key: PublicKey) -> str:
    """model_signing's key identifier: sha256 hex of the SubjectPublicKeyInfo PEM text."""
    return hashlib.sha256(key.to_pem().encode("ascii")).hexdigest()


#: The key types an OMS key signature can carry (model_signing signs with ECDSA only).
ECDSA_ALGORITHMS = ("ecdsa-p256", "ecdsa-p384", "ecdsa-p521")


def require_ecdsa(algorithm: str, where: str) -> None:
    """Refuse a key OMS cannot carry, listing the ones it can (never Ed25519)."""
    if algorithm not in ECDSA_ALGORITHMS:
        raise InvalidKeyError(
            where, f"expected {describe_keys(ECDSA_ALGORITHMS)}, found {algorithm}"
        )


@dataclass(frozen=True)
class Signer:
    """Who may have signed: a trust store (or one pinned key), or certificate roots."""

    store: TrustStore | None
    pinned: bool
    roots: tuple[Any, ...] = ()

    @classmethod
    def of(
        cls,
        public_key: str | Path | PublicKey | TrustStore | None,
        certificate_chain: Sequence[str | Path],
    ) -> Signer:
        if (public_key is None) == (not certificate_chain):
            raise UsageError(
                "--public-key",
                "--oms needs exactly one of --public-key, --trust or --certificate-chain",
            )
        if certificate_chain:
            from ._oms_x509 import load_roots

            return cls(None, False, tuple(load_roots(certificate_chain)))
        if isinstance(public_key, TrustStore):
            return cls(public_key, False)
        assert public_key is not None
        key = (
            public_key
            if isinstance(public_key, PublicKey)
            else load_public_key(public_key, accepted=ECDSA_ALGORITHMS)
        )
        label = "--public-key" if isinstance(public_key, PublicKey) else str(public_key)
        require_ecdsa(key.algorithm, label)
        return cls(TrustStore.from_public_keys([key]), True)

    def verify(
        self, bundle: OmsBundle, where: str
    ) -> tuple[str, str | None, str | None, tuple[str, ...]]:
        """(signer, channel, certificate subject, warnings), or raise the verdict."""
        if self.store is None:
            return self._verify_certificate(bundle, where)
        if bundle.certificates:
            raise UsageError(
                "--certificate-chain",
                f"{where} is a certificate signature: verify it with --certificate-chain ROOTS.pem",
            )
        signer = _trusted_signer(self.store, bundle, where)
        if self.pinned:
            return "pinned", None, None, ()
        return signer.label, signer.channel, None, ()

    def _verify_certificate(
        self, bundle: OmsBundle, where: str
    ) -> tuple[str, str | None, str | None, tuple[str, ...]]:
        from ._oms_x509 import verify_leaf

        if not bundle.certificates:
            raise UsageError(
                "--certificate-chain",
                f"{where} is a key signature: verify it with --public-key or --trust",
            )
        leaf = verify_leaf(bundle.certificates, self.roots, where=where)
        require_ecdsa(leaf.public.algorithm, f"{where}: signing certificate")
        # The certificate names the key authoritatively: it is the hint.
        store = TrustStore.from_public_keys([leaf.public])
        try:
            _trusted_signer(store, bundle, where, hint=key_hint(leaf.public))
        except BadSignatureError:
            # model_signing 0.2's certificate signer also hashed with SHA-256
            # whatever the curve; model_signing still accepts that, for 0.2 only.
            legacy = _is_legacy(bundle.payload)
            if not (legacy and _verify_v02_sha256(leaf.public, bundle.signature, bundle.payload)):
                raise
        return leaf.subject, None, leaf.subject, leaf.warnings


def _trusted_signer(
    store: TrustStore, bundle: OmsBundle, where: str, *, hint: str | None = None
) -> TrustedKey:
    """The store's key behind the bundle's one signature (trust.get_verification_result).

    The signature covers PAE over the exact payload bytes; for a model_signing
    0.2 statement, also its mis-encoded PAE (:func:`_pae_v02`), which
    model_signing still accepts, and only for such statements.
    """
    messages = [pae(bundle.payload_type, bundle.payload)]
    if _is_legacy(bundle.payload):
        messages.append(_pae_v02(bundle.payload))
    for message in messages:
        result = get_verification_result(
            store,
            [Signature(hint or bundle.key_hint or "", bundle.signature)],
            message,
            where=where,
            hint_of=key_hint,
            algorithms=ECDSA_ALGORITHMS,
        )
        if result.verified():
            break
    return result.require(None, where)[0]


def _is_legacy(payload: bytes) -> bool:
    """Whether the (not yet trusted) payload claims model_signing 0.2's statement type."""
    from ..canonical import loads_strict

    try:
        doc = loads_strict(payload)
    except SonicRegistryError:
        return False
    return isinstance(doc, dict) and doc.get("predicateType") == PREDICATE_TYPE_V01


def _pae_v02(payload: bytes) -> bytes:
    """model_signing 0.2's PAE: "DSSEV1" and the payload as Python's bytes repr (a bug, kept)."""
    return f"DSSEV1 {len(PAYLOAD_TYPE)} {PAYLOAD_TYPE} {len(payload)} {payload!r}".encode()


def _verify_v02_sha256(public: PublicKey, signature: bytes, payload: bytes) -> bool:
    """model_signing 0.2's certificate signature: its PAE over SHA-256 whatever the curve."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    if not isinstance(public.key, ec.EllipticCurvePublicKey):
        return False
    try:
        public.key.verify(signature, _pae_v02(payload), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True
