"""OpenSSF model_signing (OMS) interop, tested against the real ``model_signing`` package.

The real CLI and API start slowly (~1 s), so each subprocess does as much as it
can: the shards test signs, verifies and tampers inside one Python process.
Weak spots of the format each have a test: empty files under shards,
``ignore_paths``, symlinks, float ``shard_size``, non-canonical payloads.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from sonic_registry.bundle import verify_bundle
from sonic_registry.cli import main
from sonic_registry.errors import (
    BadSignatureError,
    DigestMismatchError,
    ExpiredReleaseError,
    InvalidKeyError,
    InvalidManifest,
    RevokedKeyError,
    SonicRegistryError,
    UnlistedFileError,
    UnsafePathError,
    UnsignedReleaseError,
    UsageError,
)
from sonic_registry.interop._oms_format import (
    Resource,
    Serialization,
    build_bundle,
    build_statement,
)
from sonic_registry.interop.oms import export_oms, key_hint, verify_oms
from sonic_registry.signing import PAYLOAD_TYPE, PrivateKey, pae

if TYPE_CHECKING:
    from helpers import Keys

BIN = Path(sys.executable).parent
MODEL_SIGNING = BIN / "model_signing"


def _model(root: Path) -> Path:
    """A small model: weights in a subdirectory, a config, a .gitattributes."""
    (root / "sub").mkdir(parents=True)
    (root / "unet.safetensors").write_bytes(
        b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + os.urandom(5000)
    )
    (root / "sub" / "audio2token.bin").write_bytes(os.urandom(2500))
    (root / "config.json").write_text('{"hidden": 64}\n')
    (root / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    return root


def _ms(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(MODEL_SIGNING), *map(str, args)], capture_output=True, text=True, timeout=120
    )


def _problems(exc: pytest.ExceptionInfo[SonicRegistryError]) -> list[SonicRegistryError]:
    return list(exc.value.problems)


def _payload(sig: Path) -> bytes:
    return base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"])


def _sign_payload(payload: bytes, key: PrivateKey, out: Path, *, hint: bool = True) -> Path:
    """A bundle around arbitrary payload bytes, signed correctly: tests the parser, not crypto."""
    data = build_bundle(payload, key.sign(pae(PAYLOAD_TYPE, payload)), key_hint(key.public))
    if not hint:
        doc = json.loads(data)
        doc["verificationMaterial"]["publicKey"] = {}
        data = json.dumps(doc).encode()
    out.write_bytes(data)
    return out


def _statement(root: Path, **serialization: Any) -> dict[str, Any]:
    """A correct files statement for ``root`` (then mutated by the test)."""
    import hashlib

    ser = Serialization(method="files", **serialization)
    resources = [
        Resource(p.relative_to(root).as_posix(), hashlib.sha256(p.read_bytes()).hexdigest())
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    ]
    return build_statement(root.name, ser, resources)


@pytest.fixture
def ec_key(make_key: Callable[..., Keys]) -> Keys:
    return make_key("oms", algorithm="ecdsa-p256")


# --- export: the real model_signing accepts what we write ---------------------


def test_release_carries_both_signatures_and_real_verifier_accepts_export(
    make_bundle: Callable[..., Path], official_key: Keys, ec_key: Keys
) -> None:
    root = make_bundle("rel")  # signed release.dsse.json (Ed25519, our format)
    (root / "docs").mkdir()
    (root / "docs" / "notes.txt").write_text("changelog\n")
    sig = root / "model.sig"
    result = CliRunner().invoke(
        main,
        [
            "export-oms",
            str(root),
            "--key",
            str(ec_key.key_path),
            "--out",
            str(sig),
            "--ignore",
            "docs",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert "release.dsse.json" in out["files"] and "release.toml" in out["files"]
    assert out["ignored"] == ["docs/"]  # model.sig does not exist yet
    # Our payload is RFC 8785 canonical and its statement lists docs as ignored.
    payload = _payload(sig)
    statement = json.loads(payload)
    assert statement["predicate"]["serialization"]["ignore_paths"] == [
        ".git",
        ".gitattributes",
        ".github",
        ".gitignore",
        "docs",
        "model.sig",
    ]

    # Either tool verifies the same bytes.
    proc = _ms("verify", "key", root, "--signature", sig, "--public_key", ec_key.pub_path)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    verified = verify_bundle(root, public_keys=[official_key.private.public])
    assert verified.release.version == "1.3.0"
    # model.sig is a signature, not content: only the unsigned docs file is noted
    assert verified.warnings == ("docs/notes.txt: not covered by the signature",)
    verified = verify_oms(root, sig, ec_key.pub_path)
    assert verified.payload_canonical
    assert set(verified.files) == set(out["files"])

    # A changed ignored file is fine for both; a changed weight fails for both.
    (root / "docs" / "notes.txt").write_text("edited\n")
    verify_oms(root, sig, ec_key.pub_path)
    unet = root / "unet.safetensors"
    unet.write_bytes(unet.read_bytes()[:-1] + b"\x00")
    proc = _ms("verify", "key", root, "--signature", sig, "--public_key", ec_key.pub_path)
    assert proc.returncode == 1 and "unet.safetensors" in proc.stderr
    result = CliRunner().invoke(
        main, ["verify", str(root), "--oms", str(sig), "--public-key", str(ec_key.pub_path)]
    )
    assert result.exit_code == 1
    assert "error: unet.safetensors: sha256: expected" in result.output


def test_ed25519_keys_cannot_carry_oms(tmp_path: Path, official_key: Keys, ec_key: Keys) -> None:
    root = _model(tmp_path / "m")
    result = CliRunner().invoke(
        main,
        [
            "export-oms",
            str(root),
            "--key",
            str(official_key.key_path),
            "--out",
            str(tmp_path / "m.sig"),
        ],
    )
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    # The refusal lists what an OMS signature accepts (never Ed25519).
    assert len(lines) == 1 and "expected an ECDSA P-256/P-384/P-521 key" in lines[0]
    assert "found ed25519" in lines[0]
    assert not (tmp_path / "m.sig").exists()
    export_oms(root, ec_key.key_path, tmp_path / "m.sig")
    with pytest.raises(
        InvalidKeyError, match="expected an ECDSA P-256/P-384/P-521 key, found ed25519"
    ):
        verify_oms(root, tmp_path / "m.sig", official_key.pub_path)


# --- verify: what the real model_signing signer writes -------------------------


def test_real_files_signature_verifies_and_reports_coverage(tmp_path: Path, ec_key: Keys) -> None:
    root = _model(tmp_path / "m")
    (root / "sub" / "empty.txt").write_bytes(b"")
    # model_signing sorts paths part by part: "sub/..." before "sub-x.txt",
    # although "-" < "/" as characters. The resource order must match.
    (root / "sub-x.txt").write_text("x\n")
    sig = tmp_path / "m.sig"
    proc = _ms("sign", "key", root, "--private_key", ec_key.key_path, "--signature", sig)
    assert proc.returncode == 0, proc.stderr

    result = CliRunner().invoke(
        main, ["verify", str(root), "--oms", str(sig), "--public-key", str(ec_key.pub_path)]
    )
    assert result.exit_code == 0, result.output
    assert "files serialization" in result.output
    for name in ("unet.safetensors", "sub/audio2token.bin", "config.json", "sub/empty.txt"):
        assert f"  covers: {name}\n" in result.output
    assert "not covered (ignored): .gitattributes" in result.output

    verified = verify_oms(root, sig, ec_key.pub_path)
    # model_signing's payload is protobuf-printed JSON: signed, valid, not canonical.
    assert not verified.payload_canonical and verified.key_hinted
    assert verified.method == "files" and verified.resources == 5

    # Our export of the same directory states the same thing: same subject,
    # same resources in the same order, hence the same root digest.
    ours = export_oms(root, ec_key.key_path, tmp_path / "ours.sig")
    theirs_doc, ours_doc = json.loads(_payload(sig)), json.loads(_payload(tmp_path / "ours.sig"))
    assert ours_doc["subject"] == theirs_doc["subject"]
    assert ours.root_digest == verified.root_digest
    assert ours_doc["predicate"]["resources"] == theirs_doc["predicate"]["resources"]
    names = [r["name"] for r in ours_doc["predicate"]["resources"]]
    assert names.index("sub/empty.txt") < names.index("sub-x.txt")
    assert sorted(ours_doc["predicate"]["serialization"]["ignore_paths"]) == sorted(
        theirs_doc["predicate"]["serialization"]["ignore_paths"]
    )

    # Every problem, one line each: an added file, a changed one, a removed one.
    (root / "extra.safetensors").write_bytes(b"x" * 10)
    (root / "config.json").write_text('{"hidden": 65}\n')
    (root / "sub" / "audio2token.bin").unlink()
    with pytest.raises(SonicRegistryError) as exc:
        verify_oms(root, sig, ec_key.pub_path)
    kinds = {(type(e), e.where) for e in _problems(exc)}
    assert kinds == {
        (UnlistedFileError, "extra.safetensors"),
        (DigestMismatchError, "config.json"),
        (DigestMismatchError, "sub/audio2token.bin"),
    }
    result = CliRunner().invoke(
        main,
        ["verify", str(root), "--oms", str(sig), "--public-key", str(ec_key.pub_path), "--json"],
    )
    assert result.exit_code == 1
    assert len(json.loads(result.output)["errors"]) == 3


_SHARDS_SCRIPT = r"""
import json, pathlib, sys
import model_signing as ms
job = json.loads(sys.argv[1])
out = {}
# 1. the real signer, shards serialization
ms.signing.Config().use_elliptic_key_signer(private_key=job["key"]).set_hashing_config(
    ms.hashing.Config().use_shard_serialization(shard_size=1000)
).sign(job["theirs"], job["theirs_sig"])
# 2. the real verifier on our shards export, before and after adding an empty file
verifier = ms.verifying.Config().use_elliptic_key_verifier(public_key=job["pub"])
for step in ("clean", "empty-file-added"):
    if step == "empty-file-added":
        pathlib.Path(job["ours"], "sub", "empty.bin").write_bytes(b"")
    try:
        verifier.verify(job["ours"], job["ours_sig"])
        out[step] = "ok"
    except Exception as exc:
        out[step] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


def test_shards_both_directions_and_the_empty_file_gap(tmp_path: Path, ec_key: Keys) -> None:
    theirs = _model(tmp_path / "theirs")
    ours = _model(tmp_path / "ours")
    (ours / "unet.safetensors").write_bytes((theirs / "unet.safetensors").read_bytes())
    exported = export_oms(ours, ec_key.key_path, tmp_path / "ours.sig", shard_size=1000)
    assert exported.method == "shards" and exported.resources == 6 + 3 + 1
    job = {
        "key": str(ec_key.key_path),
        "pub": str(ec_key.pub_path),
        "theirs": str(theirs),
        "theirs_sig": str(tmp_path / "theirs.sig"),
        "ours": str(ours),
        "ours_sig": str(tmp_path / "ours.sig"),
    }
    proc = subprocess.run(
        [sys.executable, "-c", _SHARDS_SCRIPT, json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    # The real verifier accepts our shards export (integer shard_size) ...
    assert report["clean"] == "ok"
    # ... and also accepts it after an empty file was added: 0 bytes = 0 shards.
    assert report["empty-file-added"] == "ok"
    with pytest.raises(UnlistedFileError, match="empty file not covered"):
        verify_oms(ours, tmp_path / "ours.sig", ec_key.pub_path)

    # The real signer writes shard_size as a float (protobuf Struct numbers are
    # doubles); we accept a whole float and verify every shard.
    their_sig = tmp_path / "theirs.sig"
    serialization = json.loads(_payload(their_sig))["predicate"]["serialization"]
    assert serialization["shard_size"] == 1000.0 and isinstance(serialization["shard_size"], float)
    verified = verify_oms(theirs, their_sig, ec_key.pub_path)
    assert verified.shard_size == 1000 and verified.method == "shards"
    assert verified.resources == 6 + 3 + 1  # 5010 + 2500 + 15 bytes

    # Growing a file changes its shard list: one line naming the file and sizes.
    with (theirs / "sub" / "audio2token.bin").open("ab") as fh:
        fh.write(b"more")
    with pytest.raises(DigestMismatchError, match=r"expected 2500 bytes .* found 2504 bytes"):
        verify_oms(theirs, their_sig, ec_key.pub_path)


def test_export_never_overwrites_a_weight_file(tmp_path: Path, ec_key: Keys) -> None:
    root = _model(tmp_path / "m")
    before = (root / "unet.safetensors").read_bytes()
    with pytest.raises(UsageError, match="weight file of the model"):
        export_oms(root, ec_key.key_path, root / "unet.safetensors")
    assert (root / "unet.safetensors").read_bytes() == before


def test_shard_digests_use_the_shared_hash_pool(
    tmp_path: Path, ec_key: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OMS shard hashing runs on workpool.pool_map (one pool, one thread setting)."""
    import sonic_registry.interop._oms_tree as oms_tree

    seen: list[tuple[int, int | None]] = []
    real = oms_tree.pool_map

    def spy(fn: Any, items: Any, threads: int | None = None) -> Any:
        seen.append((len(items), threads))
        return real(fn, items, threads)

    monkeypatch.setattr(oms_tree, "pool_map", spy)
    root = _model(tmp_path / "m")
    exported = export_oms(root, ec_key.key_path, tmp_path / "m.sig", shard_size=1000, threads=2)
    assert seen == [(exported.resources, 2)]
    assert verify_oms(root, tmp_path / "m.sig", ec_key.pub_path).files


def test_export_refuses_what_shards_cannot_record(tmp_path: Path, ec_key: Keys) -> None:
    root = _model(tmp_path / "m")
    (root / "marker").write_bytes(b"")
    with pytest.raises(UsageError, match="empty file: shards serialization cannot record it"):
        export_oms(root, ec_key.key_path, tmp_path / "m.sig", shard_size=4096)
    assert not (tmp_path / "m.sig").exists()
    export_oms(root, ec_key.key_path, tmp_path / "m.sig")  # files serialization records it
    assert "marker" in verify_oms(root, tmp_path / "m.sig", ec_key.pub_path).files


# --- weak spots: ignore_paths, symlinks, shard_size, payload bytes ------------


def test_ignore_paths_cannot_hide_weights(tmp_path: Path, ec_key: Keys) -> None:
    root = _model(tmp_path / "m")
    with pytest.raises(UnlistedFileError, match="weight file excluded"):
        export_oms(root, ec_key.key_path, tmp_path / "a.sig", ignore_paths=["sub"])

    # A signature (validly signed) whose ignore_paths hides a weight file.
    statement = _statement(root, ignore_paths=("sub",))
    statement["predicate"]["resources"] = [
        r for r in statement["predicate"]["resources"] if not r["name"].startswith("sub/")
    ]
    import hashlib

    statement["subject"][0]["digest"]["sha256"] = hashlib.sha256(
        b"".join(bytes.fromhex(r["digest"]) for r in statement["predicate"]["resources"])
    ).hexdigest()
    sig = _sign_payload(json.dumps(statement).encode(), ec_key.private, tmp_path / "b.sig")
    with pytest.raises(UnlistedFileError, match=r"sub/audio2token\.bin: weight file excluded"):
        verify_oms(root, sig, ec_key.pub_path)

    # "." would exclude everything: model_signing then verifies any directory.
    statement = _statement(root)
    statement["predicate"]["serialization"]["ignore_paths"] = ["."]
    sig = _sign_payload(json.dumps(statement).encode(), ec_key.private, tmp_path / "c.sig")
    with pytest.raises(InvalidManifest, match="would exclude the whole model"):
        verify_oms(root, sig, ec_key.pub_path)

    # Listed and ignored at once is contradictory.
    statement = _statement(root)
    statement["predicate"]["serialization"]["ignore_paths"] = ["config.json"]
    sig = _sign_payload(json.dumps(statement).encode(), ec_key.private, tmp_path / "d.sig")
    with pytest.raises(InvalidManifest, match="also excluded by ignore_paths"):
        verify_oms(root, sig, ec_key.pub_path)

    # The real signer happily leaves a weight file out when told to; we refuse that signature.
    proc = _ms(
        "sign",
        "key",
        root,
        "--private_key",
        ec_key.key_path,
        "--signature",
        tmp_path / "f.sig",
        "--ignore-paths",
        root / "unet.safetensors",
    )
    assert proc.returncode == 0, proc.stderr
    with pytest.raises(UnlistedFileError, match=r"unet\.safetensors: weight file excluded"):
        verify_oms(root, tmp_path / "f.sig", ec_key.pub_path)

    # An ignored non-weight file is reported, not hidden.
    (root / "README.md").write_text("hi\n")
    export_oms(root, ec_key.key_path, tmp_path / "e.sig", ignore_paths=["README.md"])
    (root / "README.md").write_text("changed\n")
    assert "README.md" in verify_oms(root, tmp_path / "e.sig", ec_key.pub_path).ignored


def test_symlinks(tmp_path: Path, ec_key: Keys) -> None:
    root = _model(tmp_path / "m")
    (root / "alias.safetensors").symlink_to("unet.safetensors")
    with pytest.raises(UnsafePathError, match=r"alias\.safetensors: is a symlink"):
        export_oms(root, ec_key.key_path, tmp_path / "m.sig")
    sig = tmp_path / "m.sig"
    export_oms(root, ec_key.key_path, sig, allow_symlinks=True)
    proc = _ms(
        "verify",
        "key",
        root,
        "--signature",
        sig,
        "--public_key",
        ec_key.pub_path,
        "--allow_symlinks",
    )
    assert proc.returncode == 0, proc.stderr
    assert "alias.safetensors" in verify_oms(root, sig, ec_key.pub_path).files

    # Retargeting the link outside the model, or at a directory, is refused.
    outside = tmp_path / "outside.safetensors"
    outside.write_bytes((root / "unet.safetensors").read_bytes())
    (root / "alias.safetensors").unlink()
    (root / "alias.safetensors").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="points outside the model"):
        verify_oms(root, sig, ec_key.pub_path)
    (root / "alias.safetensors").unlink()
    (root / "alias.safetensors").symlink_to("unet.safetensors")
    (root / "linked_dir").symlink_to("sub")
    with pytest.raises(UnsafePathError, match="symlink to a directory"):
        verify_oms(root, sig, ec_key.pub_path)


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (1000, 1000),
        (1000.0, 1000),
        (1000.5, None),
        (-1000, None),
        (0, None),
        (2.0**60, None),
        (True, None),
        ("1000", None),
    ],
)
def test_shard_size_values(value: Any, accepted: int | None) -> None:
    doc = {"method": "shards", "hash_type": "sha256", "allow_symlinks": False, "shard_size": value}
    if accepted is None:
        with pytest.raises(InvalidManifest, match="shard_size: expected a positive integer"):
            Serialization.from_dict(doc, "m.sig")
    else:
        assert Serialization.from_dict(doc, "m.sig").shard_size == accepted


@given(st.floats(allow_nan=False))
def test_float_shard_size_accepted_only_when_exact(value: float) -> None:
    doc = {"method": "shards", "hash_type": "sha256", "allow_symlinks": False, "shard_size": value}
    exact = value.is_integer() and 0 < value <= 2.0**53
    try:
        size = Serialization.from_dict(doc, "m.sig").shard_size
    except InvalidManifest:
        assert not exact
    else:
        assert exact and size == int(value)


def test_float_shard_size_in_a_signed_statement(tmp_path: Path, ec_key: Keys) -> None:
    root = _model(tmp_path / "m")
    export_oms(root, ec_key.key_path, tmp_path / "ok.sig", shard_size=1000)
    payload = _payload(tmp_path / "ok.sig").replace(b'"shard_size":1000', b'"shard_size":1000.5')
    sig = _sign_payload(payload, ec_key.private, tmp_path / "bad.sig")
    result = CliRunner().invoke(
        main, ["verify", str(root), "--oms", str(sig), "--public-key", str(ec_key.pub_path)]
    )
    assert result.exit_code == 2
    assert "serialization.shard_size: expected a positive integer, found 1000.5" in result.output


def test_payload_bytes_not_json_text_are_what_counts(tmp_path: Path, ec_key: Keys) -> None:
    root = _model(tmp_path / "m")
    statement = _statement(root)
    # Non-canonical (indented, keys reordered) but signed as-is: accepted.
    pretty = json.dumps(dict(reversed(list(statement.items()))), indent=4).encode()
    sig = _sign_payload(pretty, ec_key.private, tmp_path / "pretty.sig")
    verified = verify_oms(root, sig, ec_key.pub_path)
    assert not verified.payload_canonical and verified.resources == 3

    # A duplicate key gives two parsers two meanings: refused although signed.
    text = pretty.decode()
    first_digest = statement["predicate"]["resources"][0]["digest"]
    dup = text.replace(
        f'"digest": "{first_digest}"', f'"digest": "{"0" * 64}", "digest": "{first_digest}"', 1
    ).encode()
    assert dup != pretty
    sig = _sign_payload(dup, ec_key.private, tmp_path / "dup.sig")
    with pytest.raises(InvalidManifest, match="duplicate key"):
        verify_oms(root, sig, ec_key.pub_path)

    # Re-serialising the signed payload (as a careless tool might) breaks the signature.
    doc = json.loads(sig.read_text())
    doc["dsseEnvelope"]["payload"] = base64.b64encode(pretty.replace(b"    ", b"  ")).decode()
    (tmp_path / "reserialised.sig").write_text(json.dumps(doc))
    with pytest.raises(BadSignatureError):
        verify_oms(root, tmp_path / "reserialised.sig", ec_key.pub_path)


# --- keys, bundle structure, statement consistency -----------------------------


def test_wrong_key_and_malformed_bundles(
    tmp_path: Path, ec_key: Keys, make_key: Callable[..., Keys]
) -> None:
    root = _model(tmp_path / "m")
    sig = tmp_path / "m.sig"
    export_oms(root, ec_key.key_path, sig)
    other = make_key("other", algorithm="ecdsa-p256")
    # The hint names another key: the given key is still tried (a hint is
    # unauthenticated), and fails as "signed by a key we do not trust".
    with pytest.raises(UnsignedReleaseError, match="signed by unknown key"):
        verify_oms(root, sig, other.pub_path)
    # Without the hint (model_signing < 1.1 wrote none) the signature check decides.
    unhinted = _sign_payload(_payload(sig), ec_key.private, tmp_path / "nohint.sig", hint=False)
    assert not verify_oms(root, unhinted, ec_key.pub_path).key_hinted
    with pytest.raises(UnsignedReleaseError, match="none of the trusted keys"):
        verify_oms(root, unhinted, other.pub_path)

    doc = json.loads(sig.read_text())
    cases: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
        "media": (lambda d: d.update(mediaType="application/json"), "mediaType: expected"),
        "cert": (
            lambda d: d["verificationMaterial"].update(certificate={"rawBytes": "AA=="}),
            "Sigstore keyless bundle needs the public Sigstore trust root",
        ),
        "two-sigs": (
            lambda d: d["dsseEnvelope"]["signatures"].append(d["dsseEnvelope"]["signatures"][0]),
            "expected exactly one signature",
        ),
        "b64": (lambda d: d["dsseEnvelope"].update(payload="@@@"), "expected base64"),
    }
    for name, (mutate, message) in cases.items():
        bad = json.loads(json.dumps(doc))
        mutate(bad)
        path = tmp_path / f"{name}.sig"
        path.write_text(json.dumps(bad))
        with pytest.raises(InvalidManifest, match=message):
            verify_oms(root, path, ec_key.pub_path)
    (tmp_path / "garbage.sig").write_text("not json")
    result = CliRunner().invoke(
        main,
        [
            "verify",
            str(root),
            "--oms",
            str(tmp_path / "garbage.sig"),
            "--public-key",
            str(ec_key.pub_path),
            "--json",
        ],
    )
    assert result.exit_code == 2 and json.loads(result.output)["exit_code"] == 2
    result = CliRunner().invoke(main, ["verify", str(root), "--oms", str(sig)])
    assert result.exit_code == 2 and "exactly one of: one --public-key" in result.output


def test_statement_consistency(tmp_path: Path, ec_key: Keys) -> None:
    root = _model(tmp_path / "m")
    checks: list[tuple[Callable[[dict[str, Any]], None], str]] = [
        (
            lambda s: s["subject"][0]["digest"].update(sha256="0" * 64),
            "expected the sha256 over all resource digests",
        ),
        (
            lambda s: s["predicate"]["resources"][0].update(name="../escape"),
            "expected a relative POSIX path",
        ),
        (
            lambda s: s["predicate"]["resources"].append(s["predicate"]["resources"][0]),
            "duplicate resource",
        ),
        (
            lambda s: s["predicate"]["serialization"].update(hash_type="blake3"),
            "hash_type: expected 'sha256'",
        ),
        (lambda s: s["predicate"]["serialization"].update(compression="zstd"), "unknown key"),
        (
            lambda s: s["predicate"]["resources"][0].update(name="."),
            "either one single-file model",
        ),
    ]
    for i, (mutate, message) in enumerate(checks):
        statement = _statement(root)
        mutate(statement)
        if i in (1, 2, 6):  # keep the root digest consistent so the later check is reached
            import hashlib

            statement["subject"][0]["digest"]["sha256"] = hashlib.sha256(
                b"".join(bytes.fromhex(r["digest"]) for r in statement["predicate"]["resources"])
            ).hexdigest()
        sig = _sign_payload(json.dumps(statement).encode(), ec_key.private, tmp_path / f"{i}.sig")
        with pytest.raises(InvalidManifest, match=message):
            verify_oms(root, sig, ec_key.pub_path)


# --- parsers never fail with anything but one-line errors ---------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=12,
)


def _mutations() -> st.SearchStrategy[dict[str, Any]]:
    """Valid-looking statements with one field replaced by arbitrary JSON."""
    base: dict[str, Any] = build_statement(
        "m",
        Serialization(method="shards", shard_size=10),
        [Resource("a:0:10", "0" * 64, "sha256-sharded-10")],
    )
    paths = [
        ("_type",),
        ("predicateType",),
        ("subject",),
        ("subject", 0, "name"),
        ("subject", 0, "digest"),
        ("predicate",),
        ("predicate", "serialization"),
        ("predicate", "serialization", "method"),
        ("predicate", "serialization", "shard_size"),
        ("predicate", "serialization", "ignore_paths"),
        ("predicate", "resources"),
        ("predicate", "resources", 0),
        ("predicate", "resources", 0, "name"),
        ("predicate", "resources", 0, "digest"),
        ("predicate", "resources", 0, "algorithm"),
    ]

    def mutate(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
        doc = json.loads(json.dumps(base))
        target = doc
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value
        return doc

    return st.builds(mutate, st.sampled_from(paths), _json)


@given(_mutations())
def test_statement_parser_fails_only_with_invalid_manifest(doc: dict[str, Any]) -> None:
    from sonic_registry.interop._oms_format import OmsStatement

    try:
        OmsStatement.from_payload(json.dumps(doc).encode(), "m.sig")
    except InvalidManifest as exc:
        assert "\n" not in str(exc)


@given(st.binary(max_size=200) | _json.map(lambda v: json.dumps(v).encode()))
def test_bundle_parser_fails_only_with_invalid_manifest(data: bytes) -> None:
    from sonic_registry.interop._oms_format import OmsBundle

    try:
        OmsBundle.from_json(data, "m.sig")
    except InvalidManifest as exc:
        assert "\n" not in str(exc)


def test_verify_with_the_trust_store(
    tmp_path: Path, official_key: Keys, ec_key: Keys, make_key: Callable[..., Keys]
) -> None:
    from sonic_registry.trust import TrustStore

    root = _model(tmp_path / "m")
    sig = tmp_path / "m.sig"
    export_oms(root, ec_key.key_path, sig)
    store = (
        TrustStore()
        .with_key(official_key.private.public, ["official"], name="release")
        .with_key(ec_key.private.public, ["community"], name="hub-mirror")
    )
    store.save(tmp_path / "trust.json")
    result = CliRunner().invoke(
        main, ["verify", str(root), "--oms", str(sig), "--trust", str(tmp_path / "trust.json")]
    )
    assert result.exit_code == 0, result.output
    assert "  signed by: hub-mirror (community)\n" in result.output
    verified = verify_oms(root, sig, store)
    assert (verified.signer, verified.channel) == ("hub-mirror", "community")

    with pytest.raises(RevokedKeyError, match=f"revoked key {ec_key.keyid[:16]}"):
        verify_oms(root, sig, store.with_revoked(ec_key.keyid))
    expired = store.with_key(
        ec_key.private.public, ["community"], name="old", expires="2020-01-01T00:00:00Z"
    )
    with pytest.raises(ExpiredReleaseError, match="expired"):
        verify_oms(root, sig, expired)
    other = make_key("stranger", algorithm="ecdsa-p256")
    with pytest.raises(UnsignedReleaseError, match="signed by unknown key"):
        verify_oms(root, sig, TrustStore().with_key(other.private.public, ["official"]))
    result = CliRunner().invoke(
        main,
        [
            "verify",
            str(root),
            "--oms",
            str(sig),
            "--trust",
            str(tmp_path / "trust.json"),
            "--public-key",
            str(ec_key.pub_path),
        ],
    )
    assert result.exit_code == 2 and "found 1 key(s), a trust store" in result.output


def test_encrypted_key_needs_its_passphrase(
    tmp_path: Path, make_key: Callable[..., Keys], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = make_key("enc", algorithm="ecdsa-p256", passphrase=b"correct horse")
    root = _model(tmp_path / "m")
    sig = tmp_path / "m.sig"
    args = ["export-oms", str(root), "--key", str(key.key_path), "--out", str(sig)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "encrypted" in result.output and not sig.exists()
    monkeypatch.setenv("OMS_PASS", "correct horse")
    result = CliRunner().invoke(main, [*args, "--passphrase-env", "OMS_PASS"])
    assert result.exit_code == 0, result.output
    assert verify_oms(root, sig, key.pub_path).resources == 3


def test_shards_must_tile_each_file(tmp_path: Path, ec_key: Keys) -> None:
    import hashlib

    root = tmp_path / "m"
    root.mkdir()
    data = os.urandom(30)
    (root / "w.bin").write_bytes(data)
    ser = Serialization(method="shards", shard_size=10)
    # Correct digests of the right byte ranges, but 10:30 is not a 10-byte shard.
    resources = [
        Resource(f"w.bin:{a}:{b}", hashlib.sha256(data[a:b]).hexdigest(), ser.resource_algorithm)
        for a, b in ((0, 10), (10, 30))
    ]
    payload = json.dumps(build_statement("m", ser, resources)).encode()
    sig = _sign_payload(payload, ec_key.private, tmp_path / "m.sig")
    with pytest.raises(DigestMismatchError, match="do not split the file into 10-byte slices"):
        verify_oms(root, sig, ec_key.pub_path)


_GOLDEN_FILES = (
    b'{"_type":"https://in-toto.io/Statement/v1","predicate":{"resources":[{"algorithm":"sha256",'
    b'"digest":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03","name":"a.txt"},'
    b'{"algorithm":"sha256","digest":"be45cb2605bf36bebde684841a28f0fd43c69850a3dce5fedba69928ee3a'
    b'8991","name":"sub/b.bin"}],"serialization":{"allow_symlinks":false,"hash_type":"sha256",'
    b'"ignore_paths":[".git",".gitattributes",".github",".gitignore"],"method":"files"}},'
    b'"predicateType":"https://model_signing/signature/v1.0","subject":[{"digest":{"sha256":'
    b'"535fdd58fab5022b4ceef46788ec728b3e22f73be34cacd9995d28f91269220b"},"name":"golden"}]}'
)
_GOLDEN_SHARDS = (
    b'{"_type":"https://in-toto.io/Statement/v1","predicate":{"resources":[{"algorithm":"sha256-sh'
    b'arded-10","digest":"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03","name"'
    b':"a.txt:0:6"},{"algorithm":"sha256-sharded-10","digest":"1f825aa2f0020ef7cf91dfa30da4668d791'
    b'c5d4824fc8e41354b89ec05795ab3","name":"sub/b.bin:0:10"},{"algorithm":"sha256-sharded-10","di'
    b'gest":"fe0266ce5355a429e6134ecfdffbf75aa148ac14f368a1eafe4e41805e3583b0","name":"sub/b.bin:1'
    b'0:16"}],"serialization":{"allow_symlinks":false,"hash_type":"sha256","ignore_paths":[".git",'
    b'".gitattributes",".github",".gitignore"],"method":"shards","shard_size":10}},"predicateType"'
    b':"https://model_signing/signature/v1.0","subject":[{"digest":{"sha256":"c8c96643a457c0ee8678'
    b'e7f2f8109673490accee56db6c66a4df019be7c4985f"},"name":"golden"}]}'
)


@pytest.mark.parametrize(("shard_size", "golden"), [(None, _GOLDEN_FILES), (10, _GOLDEN_SHARDS)])
def test_export_payload_golden(
    tmp_path: Path, ec_key: Keys, shard_size: int | None, golden: bytes
) -> None:
    """The exact payload bytes: any change to the format shows up as a diff here."""
    root = tmp_path / "golden"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"hello\n")
    (root / "sub" / "b.bin").write_bytes(bytes(range(16)))
    export_oms(root, ec_key.key_path, tmp_path / "g.sig", shard_size=shard_size)
    assert _payload(tmp_path / "g.sig") == golden


def test_tiny_shard_size_is_bounded(tmp_path: Path, ec_key: Keys) -> None:
    import hashlib

    root = tmp_path / "m"
    root.mkdir()
    data = os.urandom(1 << 21)  # 2 MiB: two million 1-byte shards
    (root / "w.bin").write_bytes(data)
    with pytest.raises(UsageError, match="shards exceed the limit"):
        export_oms(root, ec_key.key_path, tmp_path / "x.sig", shard_size=1)
    # A signed statement claiming 1-byte shards is judged by counting, not listing.
    ser = Serialization(method="shards", shard_size=1)
    resources = [Resource("w.bin:0:1", hashlib.sha256(data[:1]).hexdigest(), "sha256-sharded-1")]
    payload = json.dumps(build_statement("m", ser, resources)).encode()
    sig = _sign_payload(payload, ec_key.private, tmp_path / "m.sig")
    with pytest.raises(DigestMismatchError, match=f"expected 1 bytes .* found {1 << 21} bytes"):
        verify_oms(root, sig, ec_key.pub_path)


@pytest.mark.parametrize("key", ["\n", "a\x1b[2Jb", "\u202eevil"])
def test_unknown_serialization_key_is_quoted_on_one_line(key: str) -> None:
    """Found by the property above: a key holding a newline split the error over two lines."""
    from sonic_registry.interop._oms_format import OmsStatement

    doc: dict[str, Any] = build_statement(
        "m",
        Serialization(method="shards", shard_size=10),
        [Resource("a:0:10", "0" * 64, "sha256-sharded-10")],
    )
    doc["predicate"]["serialization"][key] = 1
    with pytest.raises(InvalidManifest) as info:
        OmsStatement.from_payload(json.dumps(doc).encode(), "m.sig")
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    assert repr(key) in str(info.value) and "unknown key" in str(info.value)
