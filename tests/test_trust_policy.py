"""trust.get_verification_result: the one rule deciding which signatures count.

Every verifier (release envelopes, OMS signatures, the audit log's signed
head) goes through it, so these cases pin the rule itself: trusted, unrevoked,
unexpired, distinct keys, per-role thresholds, and keyid as a mere hint.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from helpers import Keys

from sonic_registry.bundle import verify_bundle
from sonic_registry.errors import (
    BadSignatureError,
    ExpiredReleaseError,
    RevokedKeyError,
    ThresholdNotMetError,
    UnsignedReleaseError,
)
from sonic_registry.signing import Envelope, Signature, generate_key, load_public_key
from sonic_registry.trust import TrustStore, channel_label, get_verification_result

MESSAGE = b"DSSEv1 4 test 5 hello"
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _sig(key: object, keyid: str | None = None) -> Signature:
    from sonic_registry.signing import PrivateKey

    assert isinstance(key, PrivateKey)
    return Signature(key.keyid if keyid is None else keyid, key.sign(MESSAGE))


def test_trusted_unrevoked_unexpired_distinct_keys_count() -> None:
    a, b, stranger = generate_key(), generate_key("ecdsa-p384"), generate_key()
    store = (
        TrustStore()
        .with_key(a.public, ["official"], name="a")
        .with_key(b.public, ["official", "community"], name="b")
        .with_threshold("official", 2)
    )
    # The same key twice counts once: a threshold of 2 needs 2 distinct keys.
    twice = get_verification_result(store, [_sig(a), _sig(a)], MESSAGE, where="x", now=NOW)
    assert [k.label for k in twice.signers("official")] == ["a"]
    assert not twice.verified("official")
    with pytest.raises(ThresholdNotMetError, match="needs 2 official signature"):
        twice.require("official", "x")

    both = get_verification_result(
        store, [_sig(a), _sig(b), _sig(stranger)], MESSAGE, where="x", now=NOW
    )
    assert both.verified("official") and both.verified("community")
    assert [k.label for k in both.signers("community")] == ["b"]
    assert [type(p) for p in both.problems] == [UnsignedReleaseError]

    revoked = get_verification_result(
        store.with_revoked(b.keyid), [_sig(a), _sig(b)], MESSAGE, where="x", now=NOW
    )
    assert [k.label for k in revoked.signers()] == ["a"]
    assert isinstance(revoked.problems[0], RevokedKeyError)

    old = store.with_key(b.public, ["official"], name="b", expires="2029-01-01T00:00:00Z")
    expired = get_verification_result(old, [_sig(a), _sig(b)], MESSAGE, where="x", now=NOW)
    assert not expired.verified("official")
    assert isinstance(expired.problems[0], ExpiredReleaseError)


def test_keyid_is_only_a_hint() -> None:
    a, b, stranger = generate_key(), generate_key("ecdsa-p256"), generate_key()
    store = TrustStore().with_key(a.public, ["official"]).with_key(b.public, ["official"])
    for hint in ("", "0" * 64, b.keyid, stranger.keyid):
        # Absent, unknown or naming another trusted key: a's signature still counts.
        result = get_verification_result(store, [_sig(a, hint)], MESSAGE, where="x", now=NOW)
        assert [k.keyid for k in result.signers()] == [a.keyid], hint
    # A stranger's signature hinting a trusted key never counts.
    forged = get_verification_result(store, [_sig(stranger, a.keyid)], MESSAGE, where="x", now=NOW)
    assert not forged.valid
    assert isinstance(forged.problems[0], BadSignatureError)
    unhinted = get_verification_result(store, [_sig(stranger, "")], MESSAGE, where="x", now=NOW)
    assert not unhinted.valid
    with pytest.raises(UnsignedReleaseError, match="none of the trusted keys"):
        unhinted.require(None, "x")
    # A signature over other bytes does not count, whichever key is hinted.
    other = Signature(a.keyid, a.sign(MESSAGE + b"!"))
    assert not get_verification_result(store, [other], MESSAGE, where="x", now=NOW).valid


def test_channel_label_is_one_vocabulary() -> None:
    assert [channel_label(c) for c in ("official", "community", "unverified")] == [
        "official",
        "non-official",
        "unverified",
    ]
    assert channel_label("community", long=True) == "community (non-official)"
    assert channel_label("unverified", long=True) == "UNVERIFIED (no trusted signature)"


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ecdsa-p384", "ecdsa-p521"])
def test_ecdsa_curves_sign_and_verify_releases(
    algorithm: str,
    make_key: Callable[..., Keys],
    make_bundle: Callable[..., Path],
    tmp_path: Path,
) -> None:
    key = make_key(f"k-{algorithm}", algorithm=algorithm)
    pub = load_public_key(key.pub_path)
    assert pub.algorithm == algorithm
    root = make_bundle(f"m-{algorithm}", key=key)
    verified = verify_bundle(root, public_keys=[pub], record_serial=False)
    assert verified.signers == (f"pinned:{key.keyid[:16]}",)
    # The keyid records the curve's scheme (TUF style), so curves never collide.
    assert key.private.public.scheme.endswith(algorithm[-3:])
    # The hash follows the curve: a signature made with SHA-256 on P-384 fails.
    env = Envelope.load(root / "release.dsse.json")
    if algorithm != "ecdsa-p256":
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        raw = key.private.key
        assert isinstance(raw, ec.EllipticCurvePrivateKey)
        wrong = raw.sign(env.pae(), ec.ECDSA(hashes.SHA256()))
        assert not pub.verify(wrong, env.pae())
