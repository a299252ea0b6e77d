"""Golden files for every format: a format change shows up as a reviewable diff.

Run ``pytest tests/test_goldens.py --update-goldens`` after an intended change
and commit the new files. Ed25519 signatures are deterministic, so with a fixed
key, fixed timestamps and fixed weights the whole envelope is byte-stable.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from helpers import weight_bytes, write_safetensors

from sonic_registry.bundle import sign_bundle, verify_bundle
from sonic_registry.errors import ExpiredReleaseError
from sonic_registry.schema import validate
from sonic_registry.signing import Envelope, PrivateKey
from sonic_registry.trust import TrustStore

GOLDEN = Path(__file__).parent / "golden"
#: The golden release is valid 2026-01-01 .. 2036-01-01: it is signed and verified
#: at this fixed moment, never against the real clock (which would fail from 2036).
NOW = datetime(2026, 6, 1, tzinfo=UTC)
FIXED_KEY = PrivateKey(ed25519.Ed25519PrivateKey.from_private_bytes(bytes(range(32))), "ed25519")


def _check(name: str, actual: bytes, update: bool) -> None:
    path = GOLDEN / name
    if update:
        path.write_bytes(actual)
        return
    assert path.exists(), f"missing golden {path}: run pytest --update-goldens"
    assert actual == path.read_bytes(), f"{name} changed: review, then run --update-goldens"


@pytest.fixture
def golden_bundle(tmp_path: Path) -> Path:
    """The golden release: fixed weights and the committed golden ``release.toml``.

    The manifest is an input written by hand (as a maintainer would), not the
    output of a test helper, so it is copied byte for byte.
    """
    root = tmp_path / "sonic-1.3.0"
    for role, name in (
        ("enc", "audio2token.safetensors"),
        ("dec", "audio2bucket.safetensors"),
        ("unet", "unet.safetensors"),
    ):
        write_safetensors(root / name, {"weight": weight_bytes(f"golden/{role}")})
    (root / "release.toml").write_bytes((GOLDEN / "release.toml").read_bytes())
    return root


def test_statement_and_envelope_goldens(golden_bundle: Path, update_goldens: bool) -> None:
    sign_bundle(golden_bundle, FIXED_KEY, now=NOW)
    raw = (golden_bundle / "release.dsse.json").read_bytes()
    envelope = Envelope.from_json(raw)
    statement = json.loads(envelope.payload)
    validate(statement, "statement")
    _check("statement.json", envelope.payload, update_goldens)
    _check("release.dsse.json", raw, update_goldens)
    # and the golden envelope still verifies with today's code
    golden_root = golden_bundle
    (golden_root / "release.dsse.json").write_bytes((GOLDEN / "release.dsse.json").read_bytes())
    verified = verify_bundle(golden_root, public_keys=[FIXED_KEY.public], now=NOW)
    assert verified.release.release_id == "sonic@1.3.0#1"
    # The same envelope after its expiry is refused: the check above depends on NOW only.
    with pytest.raises(ExpiredReleaseError):
        verify_bundle(
            golden_root, public_keys=[FIXED_KEY.public], now=datetime(2036, 1, 2, tzinfo=UTC)
        )


def test_trust_golden(tmp_path: Path, update_goldens: bool) -> None:
    store = (
        TrustStore()
        .with_key(
            FIXED_KEY.public, ["official"], name="sonic-release", expires="2036-01-01T00:00:00Z"
        )
        .with_threshold("official", 1)
        .with_serial("sonic", "1.3.0", 1)
        .with_revoked("0" * 64)
    )
    written = store.save(tmp_path / "trust.json")
    raw = (tmp_path / "trust.json").read_bytes()
    validate(json.loads(raw), "trust")
    _check("trust.json", raw, update_goldens)
    assert TrustStore.load(GOLDEN / "trust.json").to_dict() == written.to_dict()
