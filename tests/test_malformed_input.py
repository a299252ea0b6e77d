"""Malformed manifests, envelopes, trust stores and key files: one line, exit 2, no traceback."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from helpers import release_toml

from sonic_registry.bundle import sign_bundle, verify_bundle
from sonic_registry.canonical import MAX_DEPTH, loads_strict
from sonic_registry.errors import InvalidKeyError, InvalidManifest, UnreadableInputError, UsageError
from sonic_registry.manifest import Release
from sonic_registry.signing import Envelope, load_private_key, load_public_key
from sonic_registry.trust import TrustStore

# --- JSON ------------------------------------------------------------------------


def test_duplicate_keys_refused() -> None:
    with pytest.raises(InvalidManifest) as exc:
        loads_strict('{"payload": "a", "payload": "b"}', where="e.json")
    assert str(exc.value) == "e.json: payload: duplicate key"


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a": -Infinity}'])
def test_nan_and_infinity_refused(text: str) -> None:
    with pytest.raises(InvalidManifest, match=r"^x.json: not valid JSON: .* is not valid JSON"):
        loads_strict(text, where="x.json")


def test_deep_nesting_refused_without_recursion_error() -> None:
    with pytest.raises(InvalidManifest) as exc:
        loads_strict("[" * 100_000 + "]" * 100_000, where="deep.json")
    assert str(exc.value) == f"deep.json: JSON nested deeper than {MAX_DEPTH} levels"


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert loads_strict(json.dumps({"a": "[" * 1000})) == {"a": "[" * 1000}


def test_huge_document_refused(make_bundle, official_key) -> None:
    root = make_bundle()
    with (root / "release.dsse.json").open("wb") as fh:
        fh.write(b" " * (65 * 1024 * 1024))
    with pytest.raises(InvalidManifest, match=r"larger than 67108864 bytes, expected a DSSE"):
        verify_bundle(root, public_keys=[official_key.private.public])


@pytest.mark.parametrize(
    ("envelope", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "expected object, found list"),
        (
            '{"payload": 1, "payloadType": "application/vnd.in-toto+json", "signatures": []}',
            "payload: expected string, found 1",
        ),
        (
            '{"payload": "", "payloadType": "text/plain", "signatures": []}',
            "payloadType: expected one of 'application/vnd.in-toto+json', found 'text/plain'",
        ),
        (
            '{"payload": "!!", "payloadType": "application/vnd.in-toto+json", "signatures": []}',
            "payload: expected a value matching",
        ),
        (
            '{"payload": "", "payloadType": "application/vnd.in-toto+json",'
            ' "signatures": [{"keyid": 7, "sig": "AA=="}]}',
            "signatures.0.keyid: expected",
        ),
        (
            '{"payload": "", "payloadType": "application/vnd.in-toto+json",'
            ' "signatures": [{"keyid": "", "sig": ""}]}',
            "signatures.0.sig: expected",
        ),
        (
            '{"payload": "", "payloadType": "application/vnd.in-toto+json",'
            ' "signatures": [{"keyid": "", "sig": "a+b-"}]}',
            "found standard and URL-safe mixed",
        ),
    ],
)
def test_malformed_envelope(make_bundle, official_key, envelope: str, message: str) -> None:
    root = make_bundle()
    (root / "release.dsse.json").write_text(envelope)
    with pytest.raises(InvalidManifest) as exc:
        verify_bundle(root, public_keys=[official_key.private.public])
    assert message in str(exc.value)
    assert str(exc.value).startswith(str(root / "release.dsse.json"))


def _resign_payload(root: Path, key, mutate) -> None:
    env = Envelope.load(root / "release.dsse.json")
    statement = json.loads(env.payload)
    mutate(statement)
    payload = json.dumps(statement).encode()
    (root / "release.dsse.json").write_bytes(Envelope(payload=payload).signed_by(key).to_json())


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda s: s.update(_type="x"), "_type: expected one of 'https://in-toto.io/Statement/v1'"),
        (
            lambda s: s.update(predicateType="https://model_signing/signature/v1.0"),
            "predicateType: expected one of 'https://sonic_registry/release/v1'",
        ),
        (
            lambda s: s["predicate"].update(serial="2"),
            "predicate.serial: expected integer, found '2'",
        ),
        (
            lambda s: s["predicate"].update(serial=0),
            "predicate.serial: expected minimum 1, found 0",
        ),
        (
            lambda s: s["predicate"].update(version="one"),
            "release.version: expected a PEP 440 version, found 'one'",
        ),
        (
            lambda s: s["predicate"].update(channel="beta"),
            "predicate.channel: expected one of 'official', 'community', found 'beta'",
        ),
        (
            lambda s: s["predicate"].update(expires="tomorrow"),
            "predicate.expires: expected a value matching",
        ),
        (
            lambda s: s["predicate"]["runtime"].update(torch="2.1 or newer"),
            "runtime.torch: expected a PEP 440 specifier like '>=1.3,<1.4', found '2.1 or newer'",
        ),
        (
            lambda s: s["predicate"]["config"].update(hidden=65),
            "predicate.config_digest.sha256: expected ",
        ),
        (
            lambda s: s["subject"][0]["annotations"].update(size=-1),
            "subject.0.annotations.size: expected minimum 0, found -1",
        ),
        (
            lambda s: s["subject"][0]["digest"].update(sha256="abc"),
            "subject.0.digest.sha256: expected a value matching",
        ),
        (lambda s: s["subject"].append(dict(s["subject"][0])), "duplicate subject"),
        (
            lambda s: s["predicate"]["components"]["unet"].update(paths=["nope.safetensors"]),
            "expected 'nope.safetensors' among the subjects, found it unlisted",
        ),
    ],
)
def test_wrong_types_in_signed_statement(make_bundle, official_key, mutate, message) -> None:
    # The signer is trusted but buggy: the statement is still validated field by field.
    root = make_bundle()
    _resign_payload(root, official_key.private, mutate)
    with pytest.raises(InvalidManifest) as exc:
        verify_bundle(root, public_keys=[official_key.private.public])
    assert message in str(exc.value)


# --- release.toml ----------------------------------------------------------------


#: How tomli-w writes ``params.inference_steps.recommended`` in :func:`helpers.release_toml`.
_STEPS_RECOMMENDED = "recommended = [\n    20,\n    30,\n]"


def _toml_error(tmp_path: Path, text: str) -> str:
    path = tmp_path / "release.toml"
    path.write_text(text)
    with pytest.raises(InvalidManifest) as exc:
        Release.from_toml(path)
    return str(exc.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('version = "1.3.0"', 'version = "1.3.x"', "release.version: expected a PEP 440 version"),
        ('version = "1.3.0"', "version = 13", "release.version: expected string, found 13"),
        ("serial = 1", 'serial = "1"', "release.serial: expected integer, found '1'"),
        ('channel = "official"', 'channel = "beta"', "release.channel: expected one of"),
        ('model = "sonic"', 'model = "Sonic Model"', "release.model: expected a value matching"),
        (
            'path = "unet.safetensors"',
            'path = "../unet.safetensors"',
            "components.unet.path: expected a path inside the bundle, found '../unet.safetensors'",
        ),
        (
            'path = "unet.safetensors"',
            'path = "/abs/unet.safetensors"',
            "expected a path inside the bundle, found '/abs/unet.safetensors'",
        ),
        ('path = "unet.safetensors"', "path = 7", "components.unet.path: expected string, found 7"),
        (
            'path = "unet.safetensors"',
            'path = "audio2token.safetensors"',
            "'audio2token.safetensors' is already the audio_encoder component",
        ),
        (
            "training_step = 80000\n\n[components.unet]",
            "training_step = -5\n\n[components.unet]",
            "training_step: expected minimum 0, found -5",
        ),
        (
            _STEPS_RECOMMENDED,
            "recommended = [30, 20]",
            "params.inference_steps.recommended: expected [low, high] with low <= high",
        ),
        (
            _STEPS_RECOMMENDED,
            "recommended = [10, 30]",
            "params.inference_steps.recommended: expected a range inside allowed [15, 100]",
        ),
        (
            _STEPS_RECOMMENDED,
            'recommended = ["a", 30]',
            "params.inference_steps.recommended.0: expected number, found 'a'",
        ),
        (
            _STEPS_RECOMMENDED,
            "recommended = [nan, 30]",
            "params.inference_steps.recommended.0: expected a finite number, found nan",
        ),
        (
            'reference_runtime = ">=1.3,<1.4"',
            'reference_runtime = "newest"',
            "runtime.reference_runtime: expected a PEP 440 specifier",
        ),
        ("[config]", "[configuration]", "Additional properties are not allowed"),
    ],
)
def test_wrong_values_in_release_toml(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = release_toml()
    assert old in text
    error = _toml_error(tmp_path, text.replace(old, new, 1))
    assert error.startswith(f"{tmp_path / 'release.toml'}: ")
    assert message in error


def test_duplicate_key_in_toml(tmp_path: Path) -> None:
    error = _toml_error(tmp_path, release_toml().replace("serial = 1", "serial = 1\nserial = 2"))
    assert "not valid TOML: Cannot overwrite a value" in error


def test_deeply_nested_toml(tmp_path: Path) -> None:
    error = _toml_error(
        tmp_path, release_toml() + "\n[config.deep]\nx = " + "[" * 5000 + "]" * 5000
    )
    assert "nested too deeply" in error or "not valid TOML" in error


def test_binary_garbage_toml(tmp_path: Path) -> None:
    assert _toml_error(tmp_path, "").endswith("'release' is required")
    (tmp_path / "release.toml").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidManifest, match="not UTF-8 text"):
        Release.from_toml(tmp_path / "release.toml")


def test_huge_toml(tmp_path: Path) -> None:
    (tmp_path / "release.toml").write_text("# " + "x" * (5 * 1024 * 1024))
    with pytest.raises(InvalidManifest, match=r"larger than 4194304 bytes, expected a release"):
        Release.from_toml(tmp_path / "release.toml")


def test_sign_refuses_component_file_that_does_not_exist(make_bundle, official_key) -> None:
    root = make_bundle(sign=False)
    (root / "unet.safetensors").unlink()
    with pytest.raises(InvalidManifest) as exc:
        sign_bundle(root, official_key.private)
    assert str(exc.value).endswith(
        "components.unet.path: expected a file in the bundle, found no 'unet.safetensors'"
    )


def test_resign_of_changed_content_needs_a_new_serial(make_bundle, official_key) -> None:
    root = make_bundle()
    (root / "unet.safetensors").write_bytes(b"\x08\0\0\0\0\0\0\0{}      ")
    with pytest.raises(InvalidManifest, match=r"content changed since serial 1 was signed"):
        sign_bundle(root, official_key.private)
    (root / "release.toml").write_text(
        (root / "release.toml").read_text().replace("serial = 1", "serial = 2")
    )
    _, envelope, added = sign_bundle(root, official_key.private)
    assert not added and len(envelope.signatures) == 1


# --- trust.json --------------------------------------------------------------------


def test_trust_store_keyid_must_match_key(trust_file: Path) -> None:
    data = json.loads(trust_file.read_text())
    keyid, spec = next(iter(data["keys"].items()))
    data["keys"] = {"0" * 64: spec}
    trust_file.write_text(json.dumps(data))
    with pytest.raises(InvalidManifest) as exc:
        TrustStore.load(trust_file)
    assert f"expected keyid {keyid} (sha256 of the canonical key), found {'0' * 64}" in str(
        exc.value
    )


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(version="2"), "version: expected integer, found '2'"),
        (
            lambda d: d["roles"].update(official={"threshold": 0}),
            "roles.official.threshold: expected minimum 1, found 0",
        ),
        (lambda d: d.update(revoked="abc"), "revoked: expected array, found 'abc'"),
        (lambda d: d["serials"].update({"sonic@1.3.0": -1}), "expected minimum 1, found -1"),
        (lambda d: d.pop("keys"), "'keys' is required"),
    ],
)
def test_malformed_trust_store(trust_file: Path, mutate, message: str) -> None:
    data = json.loads(trust_file.read_text())
    mutate(data)
    trust_file.write_text(json.dumps(data))
    with pytest.raises(InvalidManifest) as exc:
        TrustStore.load(trust_file)
    assert message in str(exc.value)


def test_missing_trust_store(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError) as exc:
        TrustStore.load(tmp_path / "nope.json")
    assert str(exc.value) == f"{tmp_path / 'nope.json'}: no such file"


# --- key files ---------------------------------------------------------------------


def test_wrong_passphrase(make_key) -> None:
    keys = make_key("locked", passphrase=b"right")
    assert load_private_key(keys.key_path, b"right").keyid == keys.keyid
    with pytest.raises(InvalidKeyError) as exc:
        load_private_key(keys.key_path, b"wrong")
    assert str(exc.value) == f"{keys.key_path}: wrong passphrase"


def test_encrypted_key_without_passphrase(make_key) -> None:
    keys = make_key("locked", passphrase=b"right")
    with pytest.raises(InvalidKeyError, match=r"the key is encrypted: give its passphrase"):
        load_private_key(keys.key_path, None)


def test_public_key_given_where_private_needed(make_key) -> None:
    keys = make_key()
    with pytest.raises(InvalidKeyError) as exc:
        load_private_key(keys.pub_path)
    assert str(exc.value) == f"{keys.pub_path}: expected a private key, found a public key"


def test_private_key_given_where_public_needed(make_key) -> None:
    keys = make_key()
    with pytest.raises(InvalidKeyError) as exc:
        load_public_key(keys.key_path)
    assert str(exc.value) == f"{keys.key_path}: expected a public key, found a private key"


def test_wrong_key_type(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    k1 = ec.generate_private_key(ec.SECP256K1())
    for name, key in (("rsa", rsa_key), ("secp256k1", k1)):
        path = tmp_path / f"{name}.key"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        # The refusal lists every key type that is accepted.
        with pytest.raises(
            InvalidKeyError, match=r"expected an Ed25519 or ECDSA P-256/P-384/P-521 key, found"
        ):
            load_private_key(path)


def test_garbage_key_file(tmp_path: Path) -> None:
    path = tmp_path / "junk.key"
    path.write_bytes(os.urandom(300))
    with pytest.raises(InvalidKeyError, match="expected a PEM private key, found unparseable data"):
        load_private_key(path)
    with pytest.raises(UsageError, match="no such key file"):
        load_private_key(tmp_path / "missing.key")


def test_ecdsa_keys_sign_and_verify(make_bundle, make_key) -> None:
    ecdsa = make_key("ec", algorithm="ecdsa-p256")
    root = make_bundle(key=ecdsa)
    envelope = Envelope.load(root / "release.dsse.json")
    assert base64.b64encode(envelope.signatures[0].sig)
    signers = verify_bundle(root, public_keys=[ecdsa.private.public]).signers
    assert signers == (f"pinned:{ecdsa.keyid[:16]}",)


def test_an_archive_python_cannot_list_is_assumed_to_hold_a_pickle(
    make_bundle, official_key, tmp_path: Path
) -> None:
    import zipfile

    from sonic_registry.errors import UnlistedFileError
    from sonic_registry.formats import is_pickle_like, sniff

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("archive/data.pkl", b"\x80\x04N.")
    data = bytearray(archive.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    data[central + 6] = 99  # "version needed to extract" = 9.9: zipfile refuses it
    root = make_bundle()
    (root / "notes.txt").write_bytes(bytes(data))
    assert sniff(root / "notes.txt") == "zip-unlistable"
    assert is_pickle_like("zip-unlistable")
    with pytest.raises(UnlistedFileError, match=r"^notes.txt: weight file"):
        verify_bundle(root, public_keys=[official_key.private.public])


def test_every_error_class_lives_in_errors_and_the_old_homes_re_export_it() -> None:
    """errors.py is the one home of the exception tree; old import paths keep working."""
    from sonic_registry import errors, params
    from sonic_registry.workflows import graph

    assert graph.InvalidGraph is errors.InvalidGraph
    assert graph.InterfaceMismatchError is errors.InterfaceMismatchError
    assert params.ParameterRangeError is errors.ParameterRangeError
    assert issubclass(errors.InvalidGraph, errors.UsageError)
    assert issubclass(errors.ParameterRangeError, errors.VerificationError)
    assert errors.InterfaceMismatchError("g.json", "x").exit_code == 1


def test_raise_all_raises_the_first_carrying_every_problem() -> None:
    from sonic_registry.errors import UsageError, VerificationError, raise_all

    raise_all([])  # nothing to report: returns
    a, b = VerificationError("a", "bad"), UsageError("b", "unreadable")
    with pytest.raises(VerificationError) as info:
        raise_all([a, b])
    assert info.value is a and info.value.problems == (a, b)
