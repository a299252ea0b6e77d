"""Every way a bundle can be wrong is refused with one exact line (issue: foundation).

Each test builds a real signed bundle, breaks one thing, and checks the error
class (exit 1 verdicts vs exit 2 unreadable input) and the message.
"""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sonic_registry.bundle import verify_bundle
from sonic_registry.canonical import canonical_bytes
from sonic_registry.errors import (
    BadSignatureError,
    DigestMismatchError,
    ExpiredReleaseError,
    InvalidManifest,
    RevokedKeyError,
    RollbackError,
    ThresholdNotMetError,
    UnlistedFileError,
    UnsafePathError,
    UnsignedReleaseError,
)
from sonic_registry.signing import Envelope
from sonic_registry.trust import TrustStore

UNET = "unet.safetensors"


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _statement(root: Path) -> dict:
    env = json.loads((root / "release.dsse.json").read_text())
    return json.loads(base64.b64decode(env["payload"]))


def _resign(root: Path, statement: dict, key) -> None:
    """Sign an edited statement for real, as a malicious or buggy signer would."""
    envelope = Envelope(payload=canonical_bytes(statement)).signed_by(key.private)
    (root / "release.dsse.json").write_bytes(envelope.to_json())


def _verify(root: Path, key) -> None:
    verify_bundle(root, public_keys=[key.private.public])


# --- file contents -------------------------------------------------------------


@pytest.mark.parametrize("name", [UNET, "audio2token.safetensors", "release.toml"])
def test_flipped_byte_in_any_file(make_bundle, official_key, name: str) -> None:
    root = make_bundle()
    _flip(root / name, 20)
    with pytest.raises(DigestMismatchError, match=rf"^{name}: sha256: expected [0-9a-f]{{16}}"):
        _verify(root, official_key)


def test_truncated_file(make_bundle, official_key) -> None:
    root = make_bundle()
    size = (root / UNET).stat().st_size
    os.truncate(root / UNET, size - 1)
    with pytest.raises(DigestMismatchError) as exc:
        _verify(root, official_key)
    assert str(exc.value) == f"{UNET}: size: expected {size} bytes, found {size - 1}"


def test_extended_file(make_bundle, official_key) -> None:
    root = make_bundle()
    size = (root / UNET).stat().st_size
    with (root / UNET).open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(DigestMismatchError) as exc:
        _verify(root, official_key)
    assert str(exc.value) == f"{UNET}: size: expected {size} bytes, found {size + 1}"


def test_missing_file(make_bundle, official_key) -> None:
    root = make_bundle()
    (root / UNET).unlink()
    with pytest.raises(DigestMismatchError) as exc:
        _verify(root, official_key)
    assert str(exc.value) == f"{UNET}: expected a file, found it missing"


def test_extra_unlisted_weight_file(make_bundle, official_key) -> None:
    root = make_bundle()
    (root / "dice_talk_unet.pth").write_bytes(b"\x80\x04\x95junk")
    with pytest.raises(UnlistedFileError) as exc:
        _verify(root, official_key)
    assert str(exc.value) == (
        "dice_talk_unet.pth: weight file is not listed in the signed manifest "
        "(add it to release.toml and re-sign, or remove it)"
    )


def test_unlisted_weight_detected_by_content_not_name(make_bundle, official_key) -> None:
    root = make_bundle()
    (root / "notes.txt").write_bytes((root / UNET).read_bytes())  # safetensors under a text name
    with pytest.raises(UnlistedFileError, match=r"^notes.txt: weight file"):
        _verify(root, official_key)


def test_unlisted_text_file_is_only_a_warning(make_bundle, official_key) -> None:
    root = make_bundle()
    (root / "NOTES.md").write_text("hello\n")
    verified = verify_bundle(root, public_keys=[official_key.private.public])
    assert verified.warnings == ("NOTES.md: not covered by the signature",)


def test_all_problems_reported_not_just_the_first(make_bundle, official_key) -> None:
    root = make_bundle()
    _flip(root / UNET, 30)
    (root / "audio2bucket.safetensors").unlink()
    with pytest.raises(DigestMismatchError) as exc:
        _verify(root, official_key)
    lines = sorted(str(p) for p in exc.value.problems)
    assert lines[0] == "audio2bucket.safetensors: expected a file, found it missing"
    assert lines[1].startswith(f"{UNET}: sha256: expected")


def test_big_file_shard_mismatch_names_the_byte_range(make_bundle, official_key) -> None:
    from sonic_registry.bundle import sign_bundle

    root = make_bundle(sign=False)
    big = root / UNET
    from helpers import weight_bytes, write_safetensors

    write_safetensors(big, {"weight": weight_bytes("big", 1000)})  # valid, and > 3 shards
    sign_bundle(root, official_key.private, shard_size=1024)  # small shards: a small file shards
    statement = _statement(root)
    unet = next(s for s in statement["subject"] if s["name"] == UNET)
    assert unet["annotations"]["shards"]["size"] == 1024
    assert len(unet["annotations"]["shards"]["sha256"]) > 2
    _verify(root, official_key)  # shard digests verify
    _flip(big, 2050)
    with pytest.raises(DigestMismatchError) as exc:
        _verify(root, official_key)
    assert str(exc.value) == (
        f"{UNET}: sha256: content differs from the signed file at bytes 2048..3072 (shard 2)"
    )


@pytest.mark.parametrize("bad", ["AB" * 32, "zz" * 32, "ab" * 31 + "a\n"])
def test_a_shard_digest_that_is_not_a_sha256_is_a_malformed_statement(
    make_bundle, official_key, bad
) -> None:
    """Signed, but not 64 lowercase hex digits: one line naming the field (not a mismatch)."""
    from helpers import weight_bytes, write_safetensors

    from sonic_registry.bundle import sign_bundle

    root = make_bundle(sign=False)
    write_safetensors(root / UNET, {"weight": weight_bytes("big", 1000)})
    sign_bundle(root, official_key.private, shard_size=1024)
    statement = _statement(root)
    unet = next(s for s in statement["subject"] if s["name"] == UNET)
    unet["annotations"]["shards"]["sha256"][1] = bad
    _resign(root, statement, official_key)
    with pytest.raises(InvalidManifest) as exc:
        _verify(root, official_key)
    assert "annotations.shards: expected {size: int, sha256: [one hex digest per shard]}" in str(
        exc.value
    )


# --- paths that escape the bundle ----------------------------------------------


@pytest.mark.parametrize(
    ("bad", "shown"),
    [
        ("../outside.safetensors", "../outside.safetensors"),
        ("/etc/passwd", "/etc/passwd"),
        ("a/../../x", "a/../../x"),
        ("C:/x", "C:/x"),
    ],
)
def test_signed_path_escaping_root_is_refused(make_bundle, official_key, bad, shown) -> None:
    root = make_bundle()
    statement = _statement(root)
    statement["subject"][0]["name"] = bad
    _resign(root, statement, official_key)
    with pytest.raises(InvalidManifest) as exc:
        _verify(root, official_key)
    assert str(exc.value).endswith(
        f"subject.0.name: expected a path inside the bundle, found {shown!r}"
    )


def test_symlink_pointing_outside_is_refused(make_bundle, official_key, tmp_path) -> None:
    root = make_bundle()
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((root / UNET).read_bytes())
    (root / UNET).unlink()
    (root / UNET).symlink_to(outside)
    with pytest.raises(UnsafePathError) as exc:
        _verify(root, official_key)
    assert str(exc.value) == (
        f"{UNET}: expected a path inside the bundle, found a link to {outside.resolve()}"
    )


def test_symlink_inside_the_bundle_is_followed(make_bundle, official_key) -> None:
    root = make_bundle()
    (root / "store").mkdir()
    (root / UNET).rename(root / "store" / "blob")
    (root / UNET).symlink_to(Path("store") / "blob")
    # the blob itself is now an unlisted weight file: refused, but not as an escape
    with pytest.raises(UnlistedFileError, match=r"^store/blob: "):
        _verify(root, official_key)


def test_fifo_in_place_of_a_file_is_refused(make_bundle, official_key) -> None:
    root = make_bundle()
    (root / UNET).unlink()
    os.mkfifo(root / UNET)
    with pytest.raises(UnsafePathError) as exc:
        _verify(root, official_key)  # must not block reading the FIFO
    assert str(exc.value) == f"{UNET}: expected a regular file, found a FIFO"


def test_device_in_place_of_a_file_is_refused(make_bundle, official_key) -> None:
    root = make_bundle()
    (root / UNET).unlink()
    (root / UNET).symlink_to("/dev/zero")
    with pytest.raises(UnsafePathError, match=r"found a link to /dev/zero"):
        _verify(root, official_key)


# --- signatures and trust ------------------------------------------------------


def test_unknown_key(make_bundle, make_key, official_key) -> None:
    root = make_bundle()
    stranger = make_key("stranger")
    with pytest.raises(UnsignedReleaseError) as exc:
        _verify(root, stranger)
    signer = official_key.keyid[:16]
    assert str(exc.value).endswith(f"release.dsse.json: signed by unknown key {signer}")


def test_no_signature_at_all(make_bundle, official_key) -> None:
    root = make_bundle()
    env = Envelope.load(root / "release.dsse.json")
    (root / "release.dsse.json").write_bytes(Envelope(payload=env.payload).to_json())
    with pytest.raises(UnsignedReleaseError) as exc:
        _verify(root, official_key)
    assert str(exc.value).endswith("release.dsse.json: expected a signature, found none")


def test_unsigned_bundle_allowed_only_by_opt_in_and_labelled(make_bundle, make_key) -> None:
    root = make_bundle()
    stranger = make_key("stranger")
    verified = verify_bundle(root, public_keys=[stranger.private.public], allow_unsigned=True)
    assert verified.channel == "unverified"
    assert verified.signers == ()


def test_revoked_key(make_bundle, official_key, trust_file) -> None:
    root = make_bundle()
    TrustStore.load(trust_file).with_revoked(official_key.keyid).save()
    with pytest.raises(RevokedKeyError) as exc:
        verify_bundle(root, trust_file)
    assert str(exc.value) == (
        f"{root / 'release.dsse.json'}: signed by revoked key {official_key.keyid[:16]}"
    )


def test_expired_key(make_bundle, official_key, trust_file) -> None:
    root = make_bundle()
    store = TrustStore.load(trust_file)
    store.with_key(
        official_key.private.public,
        ["official"],
        name="official",
        expires="2020-01-01T00:00:00Z",
    ).save()
    with pytest.raises(ExpiredReleaseError, match="key official expired at 2020-01-01T00:00:00Z"):
        verify_bundle(root, trust_file)


def test_expired_release(make_bundle, official_key) -> None:
    root = make_bundle()
    later = datetime.now(UTC) + timedelta(days=400)
    with pytest.raises(ExpiredReleaseError, match=r"release sonic@1.3.0#1 expired at "):
        verify_bundle(root, public_keys=[official_key.private.public], now=later)


def test_threshold_not_met(make_bundle, trust_file) -> None:
    root = make_bundle()
    TrustStore.load(trust_file).with_threshold("official", 2).save()
    with pytest.raises(ThresholdNotMetError) as exc:
        verify_bundle(root, trust_file)
    assert str(exc.value).endswith("official release needs 2 official signature(s), found 1")


def test_payload_reserialised_after_signing(make_bundle, official_key) -> None:
    root = make_bundle()
    env = json.loads((root / "release.dsse.json").read_text())
    pretty = json.dumps(json.loads(base64.b64decode(env["payload"])), indent=1).encode()
    env["payload"] = base64.b64encode(pretty).decode()
    (root / "release.dsse.json").write_text(json.dumps(env))
    with pytest.raises(BadSignatureError) as exc:
        _verify(root, official_key)
    assert str(exc.value).endswith(
        f"signature by pinned:{official_key.keyid[:16]} does not match the payload "
        "(edited or re-serialised after signing)"
    )


def test_payload_edited_after_signing(make_bundle, official_key) -> None:
    root = make_bundle()
    env = json.loads((root / "release.dsse.json").read_text())
    statement = json.loads(base64.b64decode(env["payload"]))
    statement["predicate"]["version"] = "1.4.0"
    env["payload"] = base64.b64encode(canonical_bytes(statement)).decode()
    (root / "release.dsse.json").write_text(json.dumps(env))
    with pytest.raises(BadSignatureError):
        _verify(root, official_key)


def test_envelope_json_reformatted_still_verifies(make_bundle, official_key) -> None:
    # Signatures cover the payload bytes, not the envelope's JSON layout.
    root = make_bundle()
    env = json.loads((root / "release.dsse.json").read_text())
    (root / "release.dsse.json").write_text(json.dumps(env, indent=7, sort_keys=False))
    _verify(root, official_key)


def test_rollback_to_older_serial(make_bundle, official_key, trust_file, tmp_path) -> None:
    old = make_bundle("old", serial=1)
    new = make_bundle("new", serial=2)
    assert verify_bundle(new, trust_file).release.serial == 2
    assert TrustStore.load(trust_file).serials == {"sonic@1.3.0": 2}
    with pytest.raises(RollbackError) as exc:
        verify_bundle(old, trust_file)
    assert str(exc.value).endswith(
        "serial: expected >= 2 (already seen for sonic@1.3.0), found 1: "
        "refusing a rollback to an older manifest"
    )


def test_tampered_bundle_does_not_record_its_serial(make_bundle, trust_file) -> None:
    root = make_bundle(serial=5)
    _flip(root / UNET, 40)
    with pytest.raises(DigestMismatchError):
        verify_bundle(root, trust_file)
    assert TrustStore.load(trust_file).serials == {}


# --- unsigned bundles and hashing deferred to the loader ------------------------


def test_missing_envelope_is_an_unsigned_verdict(make_bundle, official_key) -> None:
    root = make_bundle(sign=False)
    with pytest.raises(UnsignedReleaseError) as exc:
        _verify(root, official_key)
    assert str(exc.value) == (
        f"{root / 'release.dsse.json'}: expected a signed release, found no release.dsse.json "
        f"(run `sonic-registry sign {root} --key KEY`)"
    )


def test_missing_envelope_with_opt_in_is_labelled_unverified(make_bundle, official_key) -> None:
    root = make_bundle(sign=False)
    verified = verify_bundle(root, public_keys=[official_key.private.public], allow_unsigned=True)
    assert verified.channel == "unverified"
    assert verified.signers == ()
    assert verified.subjects[UNET].size == (root / UNET).stat().st_size
    assert verified.warnings == (
        "release.dsse.json: missing; nothing about this bundle is verified",
    )


def test_hash_on_load_defers_only_the_hash(make_bundle, official_key) -> None:
    from sonic_registry.loader import load_verified

    root = make_bundle()
    _flip(root / UNET, 100)
    keys = [official_key.private.public]
    verified = verify_bundle(root, public_keys=keys, hash_on_load=("unet",))
    assert verified.unhashed == frozenset({UNET})
    # the loader hashes what it loads, so the flipped byte is still refused
    with pytest.raises(
        DigestMismatchError, match=rf"{UNET}: sha256: expected [0-9a-f]{{16}}\.\.\., "
    ):
        load_verified(root / UNET, verified, "unet")
    # sizes (and paths) are still checked by verify itself
    os.truncate(root / UNET, 10)
    with pytest.raises(DigestMismatchError, match=r"size: expected \d+ bytes, found 10"):
        verify_bundle(root, public_keys=keys, hash_on_load=("unet",))
