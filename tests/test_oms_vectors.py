"""model_signing's own signed test models, verified as upstream's scripts verify them.

The vectors (``../shared/vectors/model-transparency``, see its SOURCES.md) are
the signed models of every past model_signing release, with upstream's test
PKI: a P-384 key, and a certificate chain root -> intermediate -> leaf.
Each key and certificate folder must verify with the flags upstream passes,
and each tampered copy (built in a tmp dir: a flipped byte in a signed file,
another key or root, an edited signature) must fail.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from sonic_registry.cli import main
from sonic_registry.errors import (
    BadSignatureError,
    DigestMismatchError,
    InvalidManifest,
    SonicRegistryError,
    UnlistedFileError,
    UnsignedReleaseError,
    UsageError,
)
from sonic_registry.interop.oms import export_oms, verify_oms
from sonic_registry.signing import generate_key, load_public_key, save_private_key

VECTORS = Path(__file__).resolve().parents[1] / ".." / "shared" / "vectors" / "model-transparency"
KEYS = VECTORS / "keys"
CA = KEYS / "ca-cert.pem"
PUB = KEYS / "signing-key-pub.pem"

pytestmark = pytest.mark.skipif(
    not VECTORS.is_dir(), reason="model_signing vectors not checked out beside the repo"
)

#: (folder, model path inside it, --ignore-paths entries): upstream's commands.
KEY_CASES = [
    ("v0.3.1-elliptic-key", "signme-1", ()),
    ("v1.0.0-elliptic-key", "signme-1", ()),
    ("v1.0.1-elliptic-key", "", ("ignore-me",)),
    ("v1.1.0-elliptic-key", "", ("ignore-me",)),
]
CERT_CASES = [
    ("v0.2.0-certificate", ()),
    ("v0.3.1-certificate", ()),
    ("v1.0.0-certificate", ()),
    ("v1.0.1-certificate", ("ignore-me",)),
    ("v1.1.0-certificate", ("ignore-me",)),
]


def _copy(folder: str, tmp_path: Path) -> Path:
    dest = tmp_path / folder
    shutil.copytree(VECTORS / folder, dest)
    return dest


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_signature(sig: Path) -> None:
    doc = json.loads(sig.read_text())
    raw = bytearray(base64.b64decode(doc["dsseEnvelope"]["signatures"][0]["sig"]))
    raw[-1] ^= 0x01
    doc["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    sig.write_text(json.dumps(doc))


@pytest.mark.parametrize(("folder", "model", "ignores"), KEY_CASES)
def test_key_vectors_verify_as_upstream(
    folder: str,
    model: str,
    ignores: tuple[str, ...],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(VECTORS)  # upstream runs from the vectors folder, paths as given
    target = f"{folder}/{model}" if model else folder
    args = [
        "verify",
        target,
        "--oms",
        f"{folder}/model.sig",
        "--public-key",
        "keys/signing-key-pub.pem",
    ]
    for entry in ignores:
        args += ["--ignore-paths", f"{folder}/{entry}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"verified OMS signature {folder}/model.sig")
    if model:
        assert f"  covers: {model} (a single-file model)\n" in result.output
    else:
        assert "  covers: signme-1\n  covers: signme-2\n" in result.output
        assert "  not covered (ignored): ignore-me\n" in result.output
    # The P-384 key itself, read where any public key is read.
    assert load_public_key(PUB).algorithm == "ecdsa-p384"

    # Without upstream's --ignore-paths, the unsigned ignore-me is reported (v1.0.1's
    # payload does not record it; v1.1.0's does, so it verifies either way).
    if ignores:
        plain = verify_oms if folder.startswith("v1.1.0") else None
        if plain is not None:
            assert verify_oms(folder, f"{folder}/model.sig", PUB).files == ("signme-1", "signme-2")
        else:
            with pytest.raises(UnlistedFileError, match="not covered by the signature"):
                verify_oms(folder, f"{folder}/model.sig", PUB)

    # Tampered copies fail: a flipped byte, an edited signature, another key.
    copy = _copy(folder, tmp_path)
    signed = copy / (model or "signme-2")
    _flip(signed)
    with pytest.raises(DigestMismatchError):
        verify_oms(
            signed if model else copy,
            copy / "model.sig",
            PUB,
            ignore_paths=[copy / i for i in ignores],
        )
    shutil.copy(VECTORS / folder / (model or "signme-2"), signed)
    _edit_signature(copy / "model.sig")
    with pytest.raises((BadSignatureError, UnsignedReleaseError)):
        verify_oms(
            copy / model if model else copy,
            copy / "model.sig",
            PUB,
            ignore_paths=[copy / i for i in ignores],
        )
    other = generate_key("ecdsa-p384")
    with pytest.raises(UnsignedReleaseError):
        verify_oms(
            VECTORS / folder / model if model else VECTORS / folder,
            VECTORS / folder / "model.sig",
            other.public,
            ignore_paths=[VECTORS / folder / i for i in ignores],
        )


@pytest.mark.parametrize(("folder", "ignores"), CERT_CASES)
def test_certificate_vectors_verify_as_upstream(
    folder: str, ignores: tuple[str, ...], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(VECTORS)
    args = [
        "verify",
        f"{folder}/",
        "--oms",
        f"{folder}/model.sig",
        "--certificate-chain",
        "keys/ca-cert.pem",
    ]
    for entry in ignores:
        args += ["--ignore-paths", f"{folder}/{entry}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "  signed by: CN=intermediate-ca (certificate)\n" in result.stdout
    assert "  covers: signme-1\n  covers: signme-2\n" in result.stdout
    # Upstream's leaf says CA:TRUE: accepted, as model_signing does, with one warning line.
    warnings = result.stderr.strip().splitlines()
    assert len(warnings) == 1 and "basicConstraints CA:TRUE" in warnings[0]
    # The intermediate alone is also a root the user may choose to trust.
    verified = verify_oms(
        folder,
        f"{folder}/model.sig",
        certificate_chain=[KEYS / "int-ca-cert.pem"],
        ignore_paths=[f"{folder}/{i}" for i in ignores],
    )
    assert verified.certificate_subject == "CN=intermediate-ca"
    assert verified.legacy_format == folder.startswith("v0.2.0")

    copy = _copy(folder, tmp_path)
    ign = [copy / i for i in ignores]
    _flip(copy / "signme-1")
    with pytest.raises(DigestMismatchError, match="sha256: expected"):
        verify_oms(copy, copy / "model.sig", certificate_chain=[CA], ignore_paths=ign)
    shutil.copy(VECTORS / folder / "signme-1", copy / "signme-1")
    verify_oms(copy, copy / "model.sig", certificate_chain=[CA], ignore_paths=ign)  # restored
    _edit_signature(copy / "model.sig")
    with pytest.raises(BadSignatureError):
        verify_oms(copy, copy / "model.sig", certificate_chain=[CA], ignore_paths=ign)
    # Another root: the chain leads nowhere the verifier trusts.
    stranger = tmp_path / "stranger-ca.pem"
    stranger.write_bytes(_self_signed_ca().public_bytes(serialization.Encoding.PEM))
    with pytest.raises(
        UnsignedReleaseError, match="does not chain to a given --certificate-chain root"
    ):
        verify_oms(
            folder,
            f"{folder}/model.sig",
            certificate_chain=[stranger],
            ignore_paths=[f"{folder}/{i}" for i in ignores],
        )
    # A certificate signature is not a key signature, and vice versa: one usage line each.
    with pytest.raises(UsageError, match="is a certificate signature"):
        verify_oms(
            folder, f"{folder}/model.sig", PUB, ignore_paths=[f"{folder}/{i}" for i in ignores]
        )
    with pytest.raises(UsageError, match="is a key signature"):
        verify_oms("v1.1.0-elliptic-key", "v1.1.0-elliptic-key/model.sig", certificate_chain=[CA])


def _self_signed_ca() -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "root-ca")])  # same name, other key
    now = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )


def test_sigstore_bundles_are_refused_with_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(VECTORS)
    result = CliRunner().invoke(
        main,
        [
            "verify",
            "v1.1.0-sigstore",
            "--oms",
            "v1.1.0-sigstore/model.sig",
            "--certificate-chain",
            "keys/ca-cert.pem",
        ],
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Sigstore keyless bundle" in lines[0]


def test_ignore_paths_never_hide_a_weight_file(tmp_path: Path) -> None:
    copy = _copy("v1.0.1-elliptic-key", tmp_path)
    (copy / "ignore-me").unlink()
    (copy / "ignore-me").mkdir()
    (copy / "ignore-me" / "unet.safetensors").write_bytes(
        b"\x08\x00\x00\x00\x00\x00\x00\x00{}      "
    )
    with pytest.raises(
        UnlistedFileError, match="weight file excluded from the signature by --ignore-paths"
    ):
        verify_oms(copy, copy / "model.sig", PUB, ignore_paths=[copy / "ignore-me"])
    # An ignore entry outside the model, or one covering a signed file, is a usage error.
    with pytest.raises(UsageError, match="expected a path inside the model"):
        verify_oms(copy, copy / "model.sig", PUB, ignore_paths=[tmp_path])
    with pytest.raises(UsageError, match="would skip 'signme-1'"):
        verify_oms(copy, copy / "model.sig", PUB, ignore_paths=[copy / "signme-1"])


def test_single_file_models_export_and_verify(tmp_path: Path) -> None:
    import subprocess
    import sys

    key = generate_key("ecdsa-p384")
    key_path, pub_path = tmp_path / "k.pem", tmp_path / "k.pub"
    save_private_key(key, key_path, None)
    pub_path.write_text(key.public.to_pem())
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      " + bytes(range(256)))
    result = CliRunner().invoke(
        main, ["export-oms", str(model), "--key", str(key_path), "--out", str(tmp_path / "m.sig")]
    )
    assert result.exit_code == 0, result.output
    # model_signing itself accepts our single-file signature (P-384, resource '.').
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "model_signing"),
            "verify",
            "key",
            str(model),
            "--signature",
            str(tmp_path / "m.sig"),
            "--public_key",
            str(pub_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert verify_oms(model, tmp_path / "m.sig", pub_path).files == (".",)
    # A single-file signature does not verify a directory, nor the other way round.
    with pytest.raises(DigestMismatchError, match="covers a single file, found a directory"):
        verify_oms(tmp_path, tmp_path / "m.sig", pub_path)
    with pytest.raises(DigestMismatchError, match="covers a directory, found a single file"):
        verify_oms(
            VECTORS / "v1.1.0-elliptic-key" / "signme-1",
            VECTORS / "v1.1.0-elliptic-key" / "model.sig",
            PUB,
        )
    # The model file itself is never the output.
    result = CliRunner().invoke(
        main, ["export-oms", str(model), "--key", str(key_path), "--out", str(model)]
    )
    assert result.exit_code == 2 and "is the model itself" in result.output
    _flip(model)
    with pytest.raises(
        DigestMismatchError, match=r"model\.safetensors: sha256: expected [0-9a-f]{16}\.\.\., found"
    ):
        verify_oms(model, tmp_path / "m.sig", pub_path)


def test_v02_statement_is_read_as_model_signing_reads_it(tmp_path: Path) -> None:
    """model_signing 0.2: one subject per file, signed over its mis-encoded PAE."""
    import hashlib

    from sonic_registry.interop._oms_format import OmsStatement, build_bundle
    from sonic_registry.interop.oms import key_hint
    from sonic_registry.signing import PAYLOAD_TYPE

    model = tmp_path / "m"
    model.mkdir()
    (model / "a.bin").write_bytes(b"alpha")
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "a.bin", "digest": {"sha256": hashlib.sha256(b"alpha").hexdigest()}}],
        "predicateType": "https://model_signing/Digests/v0.1",
        "predicate": {"unused": "Unused, just passed due to API requirements"},
    }
    payload = json.dumps(statement).encode()
    key = generate_key("ecdsa-p384")
    legacy_pae = f"DSSEV1 {len(PAYLOAD_TYPE)} {PAYLOAD_TYPE} {len(payload)} {payload!r}".encode()
    sig = tmp_path / "legacy.sig"
    sig.write_bytes(build_bundle(payload, key.sign(legacy_pae), key_hint(key.public)))
    verified = verify_oms(model, sig, key.public)
    assert verified.legacy_format and verified.files == ("a.bin",)
    (model / "a.bin").write_bytes(b"alphA")
    with pytest.raises(DigestMismatchError):
        verify_oms(model, sig, key.public)
    # The legacy encoding is accepted only for a 0.2 statement.
    v1 = json.dumps({**statement, "predicateType": "https://model_signing/signature/v1.0"}).encode()
    v1_pae = f"DSSEV1 {len(PAYLOAD_TYPE)} {PAYLOAD_TYPE} {len(v1)} {v1!r}".encode()
    sig.write_bytes(build_bundle(v1, key.sign(v1_pae), key_hint(key.public)))
    with pytest.raises(BadSignatureError):
        verify_oms(model, sig, key.public)

    # A 0.2 payload with a bad subject is refused with one line.
    bad = json.dumps({**statement, "subject": [{"name": "../x", "digest": {"sha256": "0" * 64}}]})
    with pytest.raises(InvalidManifest, match=r"subject\.0\.name"):
        OmsStatement.from_payload(bad.encode(), "p")


def test_p384_key_in_the_trust_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`trust add-key` takes upstream's P-384 key; `verify --oms --trust` then names it."""
    store = tmp_path / "trust.json"
    runner = CliRunner()
    assert runner.invoke(main, ["trust", "init", "--trust", str(store)]).exit_code == 0
    added = runner.invoke(
        main, ["trust", "add-key", str(PUB), "--trust", str(store), "--name", "upstream-test"]
    )
    assert added.exit_code == 0, added.output
    monkeypatch.chdir(VECTORS)
    result = runner.invoke(
        main,
        [
            "verify",
            "v1.1.0-elliptic-key",
            "--oms",
            "v1.1.0-elliptic-key/model.sig",
            "--trust",
            str(store),
            "--ignore-paths",
            "v1.1.0-elliptic-key/ignore-me",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "  signed by: upstream-test (official)\n" in result.output


@pytest.mark.parametrize("algorithm", ["ecdsa-p256", "ecdsa-p384", "ecdsa-p521"])
def test_every_ecdsa_curve_round_trips_through_model_signing(
    algorithm: str, tmp_path: Path
) -> None:
    import subprocess
    import sys

    key = generate_key(algorithm)
    key_path, pub_path = tmp_path / "k.pem", tmp_path / "k.pub"
    save_private_key(key, key_path, None)
    pub_path.write_text(key.public.to_pem())
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(bytes(range(256)) * 4)
    export_oms(model, key_path, tmp_path / "m.sig")
    proc = subprocess.run(
        [
            str(Path(sys.executable).parent / "model_signing"),
            "verify",
            "key",
            str(model),
            "--signature",
            str(tmp_path / "m.sig"),
            "--public_key",
            str(pub_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert verify_oms(model, tmp_path / "m.sig", pub_path).resources == 1


def test_refused_keys_and_flags_say_what_is_accepted(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_pub = tmp_path / "rsa.pub"
    rsa_pub.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    store = tmp_path / "trust.json"
    runner = CliRunner()
    assert runner.invoke(main, ["trust", "init", "--trust", str(store)]).exit_code == 0
    refused = runner.invoke(main, ["trust", "add-key", str(rsa_pub), "--trust", str(store)])
    assert refused.exit_code == 2
    assert "expected an Ed25519 or ECDSA P-256/P-384/P-521 key" in refused.output
    # --oms offers only what an OMS signature can carry.
    oms = runner.invoke(
        main,
        [
            "verify",
            str(VECTORS / "v1.1.0-elliptic-key"),
            "--oms",
            str(VECTORS / "v1.1.0-elliptic-key" / "model.sig"),
            "--public-key",
            str(rsa_pub),
        ],
    )
    assert oms.exit_code == 2 and "expected an ECDSA P-256/P-384/P-521 key, found" in oms.output
    assert "Ed25519" not in oms.output
    # The OMS-only flags without --oms are one usage line.
    for flag, value in (("--ignore-paths", "x"), ("--certificate-chain", str(CA))):
        result = runner.invoke(
            main, ["verify", str(tmp_path), flag, value, "--public-key", str(PUB)]
        )
        assert (
            result.exit_code == 2 and f"{flag}: applies to OpenSSF model_signing" in result.output
        )


@pytest.mark.slow
def test_upstream_model_signing_agrees_on_every_vector_and_tampered_copy(tmp_path: Path) -> None:
    """model_signing 1.1.1 itself, on the same folders and tampered copies: same verdicts."""
    import model_signing

    def upstream(folder: Path, model: Path, ignores: tuple[str, ...], cert: bool) -> bool:
        config = model_signing.verifying.Config()
        config = (
            config.use_certificate_verifier(certificate_chain=[CA])
            if cert
            else config.use_elliptic_key_verifier(public_key=PUB)
        )
        hashing = model_signing.hashing.Config().set_ignored_paths(
            paths=[*ignores, "model.sig"] if model.is_dir() else []
        )
        try:
            config.set_hashing_config(hashing).verify(model, folder / "model.sig")
        except Exception:  # model_signing raises ValueError, InvalidSignature, ...
            return False
        return True

    def ours(folder: Path, model: Path, ignores: tuple[str, ...], cert: bool) -> bool:
        try:
            verify_oms(
                model,
                folder / "model.sig",
                None if cert else PUB,
                certificate_chain=[CA] if cert else (),
                ignore_paths=[folder / i for i in ignores],
            )
        except SonicRegistryError:
            return False
        return True

    cases = [(f, m, i, False) for f, m, i in KEY_CASES] + [(f, "", i, True) for f, i in CERT_CASES]
    for folder_name, model_name, ignores, cert in cases:
        folder = _copy(folder_name, tmp_path)
        model = folder / model_name if model_name else folder
        assert upstream(folder, model, ignores, cert) and ours(folder, model, ignores, cert)
        _flip(folder / (model_name or "signme-1"))
        assert not upstream(folder, model, ignores, cert), folder_name
        assert not ours(folder, model, ignores, cert), folder_name
