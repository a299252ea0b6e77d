"""Sign and verify real bundles: the happy paths, threshold signing, channels."""

from __future__ import annotations

from pathlib import Path

import pytest

from sonic_registry.bundle import sign_bundle, verify_bundle
from sonic_registry.errors import ThresholdNotMetError
from sonic_registry.signing import Envelope
from sonic_registry.trust import TrustStore


def test_signed_bundle_verifies_with_pinned_key(make_bundle, official_key) -> None:
    root = make_bundle()
    verified = verify_bundle(root, public_keys=[official_key.private.public])
    assert verified.release.release_id == "sonic@1.3.0#1"
    assert verified.channel == "official"
    assert set(verified.files) == {
        "audio2token.safetensors",
        "audio2bucket.safetensors",
        "unet.safetensors",
        "release.toml",
    }


def test_trust_store_labels_community_release(make_bundle, community_key, trust_file) -> None:
    root = make_bundle(channel="community", key=community_key)
    verified = verify_bundle(root, trust_file)
    assert verified.channel == "community"
    assert verified.signers == ("community",)


def test_official_claim_signed_by_community_key_is_refused(
    make_bundle, community_key, trust_file
) -> None:
    root = make_bundle(channel="official", key=community_key)
    with pytest.raises(ThresholdNotMetError, match="official release needs 1 official signature"):
        verify_bundle(root, trust_file)


def test_second_key_adds_signature_to_same_envelope(
    make_bundle, make_key, official_key, trust_file, tmp_path: Path
) -> None:
    second = make_key("second")
    root = make_bundle()
    before = Envelope.load(root / "release.dsse.json")
    _, envelope, added = sign_bundle(root, second.private)
    assert added
    assert envelope.payload == before.payload
    assert {s.keyid for s in envelope.signatures} == {official_key.keyid, second.keyid}
    store = (
        TrustStore.load(trust_file)
        .with_key(second.private.public, ["official"], name="second")
        .with_threshold("official", 2)
    )
    verified = verify_bundle(root, store)
    assert verified.signers == ("official", "second")


def test_sign_and_verify_agree_on_links_inside_the_bundle(make_bundle, official_key) -> None:
    # A link that stays inside the root is followed by both: sign hashes its
    # target, as verify does, instead of failing on the link itself.
    root = make_bundle(sign=False)
    (root / "blobs").mkdir()
    (root / "unet.safetensors").rename(root / "blobs" / "unet.bin")
    (root / "unet.safetensors").symlink_to(Path("blobs") / "unet.bin")
    (root / "release.toml").write_text(
        (root / "release.toml").read_text()
        + '\n[components.blob]\npath = "blobs/unet.bin"\nformat = "other"\ninterface = "x"\n'
    )
    sign_bundle(root, official_key.private)
    verified = verify_bundle(root, public_keys=[official_key.private.public])
    assert verified.files["unet.safetensors"] == verified.files["blobs/unet.bin"]


def test_sign_refuses_to_extend_a_corrupt_envelope(make_bundle, official_key) -> None:
    import base64
    import json

    from sonic_registry.errors import InvalidManifest

    root = make_bundle()
    env = json.loads((root / "release.dsse.json").read_text())
    env["payload"] = base64.b64encode(b"[1]").decode()
    (root / "release.dsse.json").write_text(json.dumps(env))
    with pytest.raises(InvalidManifest) as exc:
        sign_bundle(root, official_key.private)
    assert str(exc.value) == f"{root / 'release.dsse.json'}: payload: expected object, found list"


def test_one_list_of_signature_algorithms() -> None:
    """Adding an algorithm touches signing.ALGORITHMS and the trust schema's scheme enum only."""
    import json
    import subprocess
    import sys
    from importlib import resources

    from sonic_registry.cli.keys import keygen
    from sonic_registry.signing import ALGORITHMS

    [option] = [p for p in keygen.params if p.name == "algorithm"]
    assert list(option.type.choices) == list(ALGORITHMS)  # type: ignore[attr-defined]
    schema = json.loads(
        resources.files("sonic_registry").joinpath("schemas/trust.schema.json").read_text()
    )
    key_props = schema["properties"]["keys"]["additionalProperties"]["properties"]
    assert {t for t, _ in ALGORITHMS.values()} <= set(key_props["keytype"]["enum"])
    assert {s for _, s in ALGORITHMS.values()} <= set(key_props["scheme"]["enum"])
    # ... and the CLI's --help still does not import the signing stack to list them.
    code = (
        "import sys; from click.testing import CliRunner; from sonic_registry.cli import main\n"
        "CliRunner().invoke(main, ['--help']); print('sonic_registry.signing' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
