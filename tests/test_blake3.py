"""Optional BLAKE3 digests: signed beside SHA-256, checked instead of it when installed."""

from __future__ import annotations

import json

import blake3
import pytest

from sonic_registry.bundle import sign_bundle, verify_bundle
from sonic_registry.errors import DigestMismatchError
from sonic_registry.signing import Envelope


def test_sign_with_blake3_records_both_digests(make_bundle, official_key) -> None:
    root = make_bundle(sign=False)
    sign_bundle(root, official_key.private, blake3=True)
    statement = json.loads(Envelope.load(root / "release.dsse.json").payload)
    for subject in statement["subject"]:
        data = (root / subject["name"]).read_bytes()
        assert subject["digest"]["blake3"] == blake3.blake3(data).hexdigest()
    verify_bundle(root, public_keys=[official_key.private.public])


@pytest.mark.parametrize(("prefer_blake3", "algorithm"), [(True, "blake3"), (False, "sha256")])
def test_tamper_caught_by_either_digest(
    make_bundle, official_key, prefer_blake3: bool, algorithm: str
) -> None:
    root = make_bundle(sign=False)
    sign_bundle(root, official_key.private, blake3=True)
    target = root / "unet.safetensors"
    data = bytearray(target.read_bytes())
    data[-3] ^= 0x10
    target.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError) as exc:
        verify_bundle(root, public_keys=[official_key.private.public], prefer_blake3=prefer_blake3)
    assert str(exc.value).startswith(f"unet.safetensors: {algorithm}: expected ")


def test_blake3_digest_forged_alone_is_caught(make_bundle, official_key) -> None:
    # A signer whose BLAKE3 disagrees with the file fails verification even
    # though its SHA-256 matches: whichever digest is checked must hold.
    root = make_bundle(sign=False)
    sign_bundle(root, official_key.private, blake3=True)
    env = Envelope.load(root / "release.dsse.json")
    statement = json.loads(env.payload)
    statement["subject"][0]["digest"]["blake3"] = "0" * 64
    from sonic_registry.canonical import canonical_bytes

    forged = Envelope(payload=canonical_bytes(statement)).signed_by(official_key.private)
    (root / "release.dsse.json").write_bytes(forged.to_json())
    with pytest.raises(DigestMismatchError, match=r": blake3: expected 0000000000000000"):
        verify_bundle(root, public_keys=[official_key.private.public])
