"""release.dsse.json as other DSSE implementations may write it (envelope.md, protocol.md).

The spec allows URL-safe or standard base64 (padded or not), unknown fields,
and a missing or empty ``keyid``; ``keyid`` is an unauthenticated hint. These
must verify. What must still fail: sigstore-python's DSSE cases (missing
signature, empty signature, mismatched payload type, wrong key), an edited
payload, and a hint that names a trusted key over an untrusted key's signature.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import Keys

from sonic_registry.bundle import verify_bundle
from sonic_registry.cli import main
from sonic_registry.errors import (
    BadSignatureError,
    InvalidManifest,
    ThresholdNotMetError,
    UnsignedReleaseError,
)
from sonic_registry.signing import Envelope, pae
from sonic_registry.trust import TrustStore

Mutate = Callable[[dict[str, Any]], None]


def _rewrite(root: Path, mutate: Mutate) -> None:
    path = root / "release.dsse.json"
    doc = json.loads(path.read_text())
    mutate(doc)
    path.write_text(json.dumps(doc))


def _urlsafe(text: str, *, pad: bool) -> str:
    out = base64.urlsafe_b64encode(base64.b64decode(text)).decode()
    return out if pad else out.rstrip("=")


def _unpadded(text: str) -> str:
    return text.rstrip("=")


def _all_sigs(fn: Callable[[dict[str, Any]], None]) -> Mutate:
    def mutate(doc: dict[str, Any]) -> None:
        for s in doc["signatures"]:
            fn(s)

    return mutate


ALLOWED: dict[str, Mutate] = {
    "url-safe base64, padded": lambda d: d.update(
        payload=_urlsafe(d["payload"], pad=True),
        signatures=[{**s, "sig": _urlsafe(s["sig"], pad=True)} for s in d["signatures"]],
    ),
    "url-safe base64, unpadded": lambda d: d.update(
        payload=_urlsafe(d["payload"], pad=False),
        signatures=[{**s, "sig": _urlsafe(s["sig"], pad=False)} for s in d["signatures"]],
    ),
    "standard base64, unpadded": lambda d: d.update(
        payload=_unpadded(d["payload"]),
        signatures=[{**s, "sig": _unpadded(s["sig"])} for s in d["signatures"]],
    ),
    "unknown top-level field": lambda d: d.update(comment="made elsewhere", version=2),
    "unknown signature field": _all_sigs(lambda s: s.update(cert=None, extra={"a": 1})),
    "no keyid": _all_sigs(lambda s: s.pop("keyid")),
    "empty keyid": _all_sigs(lambda s: s.update(keyid="")),
    "null keyid": _all_sigs(lambda s: s.update(keyid=None)),
    "unknown keyid": _all_sigs(lambda s: s.update(keyid="not-a-key-we-know")),
}


@pytest.mark.parametrize("variation", sorted(ALLOWED))
def test_spec_variations_verify(
    variation: str, make_bundle: Callable[..., Path], official_key: Keys, trust_file: Path
) -> None:
    root = make_bundle()
    _rewrite(root, ALLOWED[variation])
    verified = verify_bundle(root, trust_file, record_serial=False)
    assert verified.channel == "official" and verified.signers == ("official",)
    result = CliRunner().invoke(
        main, ["verify", str(root), "--trust", str(trust_file), "--no-record"]
    )
    assert result.exit_code == 0, result.output


def test_a_wrong_hint_neither_breaks_nor_forges(
    make_bundle: Callable[..., Path],
    official_key: Keys,
    community_key: Keys,
    make_key: Callable[..., Keys],
    trust_file: Path,
) -> None:
    # The hint names another trusted key: the official signature still counts.
    root = make_bundle("hinted")
    _rewrite(root, _all_sigs(lambda s: s.update(keyid=community_key.keyid)))
    assert verify_bundle(root, trust_file, record_serial=False).signers == ("official",)

    # An untrusted key's signature that claims to be the official key's never counts.
    stranger = make_key("stranger")
    forged = make_bundle("forged", key=stranger)
    _rewrite(forged, _all_sigs(lambda s: s.update(keyid=official_key.keyid)))
    with pytest.raises(BadSignatureError, match="signature by official does not match"):
        verify_bundle(forged, trust_file, record_serial=False)
    _rewrite(forged, _all_sigs(lambda s: s.pop("keyid")))
    with pytest.raises(UnsignedReleaseError, match="none of the trusted keys"):
        verify_bundle(forged, trust_file, record_serial=False)


def test_threshold_counts_distinct_keys_without_keyids(
    make_bundle: Callable[..., Path],
    official_key: Keys,
    make_key: Callable[..., Keys],
    tmp_path: Path,
) -> None:
    second = make_key("second", algorithm="ecdsa-p384")
    root = make_bundle("two")
    env = Envelope.load(root / "release.dsse.json").signed_by(second.private)
    (root / "release.dsse.json").write_bytes(env.to_json())
    store = (
        TrustStore()
        .with_key(official_key.private.public, ["official"], name="a")
        .with_key(second.private.public, ["official"], name="b")
        .with_threshold("official", 2)
    )
    _rewrite(root, _all_sigs(lambda s: s.pop("keyid")))
    assert verify_bundle(root, store, record_serial=False).signers == ("a", "b")
    # The same signature twice is still one key.
    _rewrite(root, lambda d: d.update(signatures=[d["signatures"][0], d["signatures"][0]]))
    with pytest.raises(ThresholdNotMetError, match="needs 2 official signature"):
        verify_bundle(root, store, record_serial=False)


# --- sigstore-python's DSSE cases (test/unit/test_dsse.py) ------------------------


def test_missing_signature(make_bundle: Callable[..., Path], trust_file: Path) -> None:
    root = make_bundle()
    _rewrite(root, lambda d: d.update(signatures=[]))
    with pytest.raises(UnsignedReleaseError, match="expected a signature, found none"):
        verify_bundle(root, trust_file, record_serial=False)


def test_empty_signature(make_bundle: Callable[..., Path], trust_file: Path) -> None:
    root = make_bundle()
    _rewrite(root, _all_sigs(lambda s: s.update(sig="")))
    with pytest.raises(InvalidManifest, match=r"signatures\.0\.sig"):
        verify_bundle(root, trust_file, record_serial=False)
    result = CliRunner().invoke(main, ["verify", str(root), "--trust", str(trust_file)])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1


def test_mismatched_payload_type(
    make_bundle: Callable[..., Path], official_key: Keys, trust_file: Path
) -> None:
    root = make_bundle()
    # Another payloadType is refused outright (one line, exit 2) ...
    _rewrite(root, lambda d: d.update(payloadType="application/json"))
    with pytest.raises(InvalidManifest, match="payloadType"):
        verify_bundle(root, trust_file, record_serial=False)
    # ... and a signature over PAE with another type does not verify under ours.
    env = Envelope.load(make_bundle("other") / "release.dsse.json")
    sig = official_key.private.sign(pae("application/json", env.payload))
    doc = json.loads(env.to_json())
    doc["signatures"] = [{"keyid": official_key.keyid, "sig": base64.b64encode(sig).decode()}]
    (root / "release.dsse.json").write_text(json.dumps(doc))
    with pytest.raises(BadSignatureError, match="does not match the payload"):
        verify_bundle(root, trust_file, record_serial=False)


def test_wrong_key(
    make_bundle: Callable[..., Path], make_key: Callable[..., Keys], trust_file: Path
) -> None:
    root = make_bundle(key=make_key("wrong"))
    with pytest.raises(UnsignedReleaseError, match="signed by unknown key"):
        verify_bundle(root, trust_file, record_serial=False)


def test_payload_stays_authenticated(make_bundle: Callable[..., Path], trust_file: Path) -> None:
    root = make_bundle()

    def edit(d: dict[str, Any]) -> None:
        payload = base64.b64decode(d["payload"]).replace(b'"serial":1', b'"serial":9')
        d["payload"] = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        for s in d["signatures"]:
            s.pop("keyid")

    _rewrite(root, edit)
    with pytest.raises(UnsignedReleaseError, match="none of the trusted keys"):
        verify_bundle(root, trust_file, record_serial=False)


def test_what_sign_writes_is_unchanged(
    make_bundle: Callable[..., Path], official_key: Keys
) -> None:
    doc = json.loads((make_bundle() / "release.dsse.json").read_text())
    assert sorted(doc) == ["payload", "payloadType", "signatures"]
    assert [sorted(s) for s in doc["signatures"]] == [["keyid", "sig"]]
    assert doc["signatures"][0]["keyid"] == official_key.keyid
    assert base64.b64encode(base64.b64decode(doc["payload"])).decode() == doc["payload"]
