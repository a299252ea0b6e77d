"""The checked generate, end to end in-process: verify, resolve, check params, load, log."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
from runtime_world import SECONDS, SIZE, build_world, request

from reference_runtime import FPS
from reference_runtime.runtime import generate
from reference_runtime.weights import write_bundle
from sonic_registry.audit import read_records
from sonic_registry.bundle import sign_bundle
from sonic_registry.errors import (
    DigestMismatchError,
    IncompatibleRuntimeError,
    MixedReleaseError,
    UnreadableInputError,
    UnsignedReleaseError,
)
from sonic_registry.signing import generate_key


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_world(tmp_path_factory.mktemp("world"))


def test_generate_writes_video_and_audit_record(world: dict[str, Path], tmp_path: Path) -> None:
    lines: list[str] = []
    result = generate(request(world, tmp_path), echo=lines.append)
    assert abs(result.sync.offset_ms) < 40
    assert result.frames == round(SECONDS * FPS)
    assert result.label == "official"
    assert any("min_resolution=128 is below the recommended" in w for w in result.warnings)
    [(_, record)] = list(read_records(tmp_path / "log.jsonl"))
    fields = record.fields
    assert fields["release"]["id"] == "sonic-reference@1.3.0#1"
    assert (
        fields["output"]["sha256"]
        == hashlib.sha256((tmp_path / "out.mp4").read_bytes()).hexdigest()
    )
    assert fields["runtime"]["reference_runtime"] == "1.3.0"
    assert abs(fields["sync"]["offset_ms"]) < 40
    assert set(fields["components"]) == {"audio_encoder", "motion_decoder", "renderer"}


def test_mixed_is_refused_then_logged_as_unsafe(world: dict[str, Path], tmp_path: Path) -> None:
    req = request(world, tmp_path, components={"audio_encoder": world["v1.2.0"]})
    with pytest.raises(MixedReleaseError, match="releases must not be mixed"):
        generate(req)
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "log.jsonl").exists()
    from dataclasses import replace

    # A forced mix still needs a runtime every release accepts, judged as the
    # resolver judges one release (a version that is not PEP 440 is bad input).
    with pytest.raises(IncompatibleRuntimeError, match="needs reference_runtime"):
        generate(replace(req, allow_mixed_unsafe=True, runtime_version="1.2.9"))
    with pytest.raises(UnreadableInputError, match="PEP 440"):
        generate(replace(req, allow_mixed_unsafe=True, runtime_version="nightly"))
    result = generate(replace(req, allow_mixed_unsafe=True))
    assert 250 <= result.sync.offset_ms <= 350
    [(_, record)] = list(read_records(tmp_path / "log.jsonl"))
    assert record.fields["unsafe_mixed_releases"]
    assert result.label == record.fields["label"] == "UNSAFE mixed releases (official)"
    assert record.fields["components"]["audio_encoder"]["release"] == "sonic-reference@1.2.0#1"


def test_each_bundle_is_verified_once(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import reference_runtime.runtime as rt
    from sonic_registry.bundle import verify_bundle as real

    calls: list[tuple[Path, tuple[str, ...]]] = []

    def spy(root: Path, *args: object, hash_on_load: tuple[str, ...] = (), **kw: object) -> object:
        calls.append((Path(root), tuple(hash_on_load)))
        return real(root, *args, hash_on_load=hash_on_load, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("reference_runtime.runtime.verify_bundle", spy)
    main = world["v1.3.0"]
    alias = main / ".." / main.name  # the main bundle, spelled differently
    req = request(
        world, tmp_path,
        components={"motion_decoder": world["v1.2.0"], "renderer": world["v1.2.0"],
                    "audio_encoder": alias},
    )  # fmt: skip
    verified, sources = rt._verify_all(req, rt.load_trust_store(None, req.public_keys), print)
    assert calls == [(main, ("audio_encoder",)), (world["v1.2.0"], ("motion_decoder", "renderer"))]
    assert sources["audio_encoder"] is verified
    assert sources["motion_decoder"] is sources["renderer"] is not verified
    assert len({id(v) for v in sources.values()}) == 2


def test_old_runtime_and_swapped_weight_are_refused(world: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(IncompatibleRuntimeError, match="needs reference_runtime"):
        generate(request(world, tmp_path, runtime_version="1.2.9"))
    # 1.3 code may run the older 1.2.0 release (its specifier allows it).
    ok = generate(request(world, tmp_path, bundle=world["v1.2.0"]))
    assert abs(ok.sync.offset_ms) < 40
    bad = tmp_path / "bad"
    shutil.copytree(world["v1.3.0"], bad)
    raw = bytearray((bad / "renderer.safetensors").read_bytes())
    raw[-2] ^= 0x10
    (bad / "renderer.safetensors").write_bytes(bytes(raw))
    said: list[str] = []
    with pytest.raises(DigestMismatchError):
        generate(request(world, tmp_path, bundle=bad, out=tmp_path / "bad.mp4"), echo=said.append)
    assert not (tmp_path / "bad.mp4").exists()
    # Before loading, the runtime claims only what it checked: never "verified".
    assert said[0] == (
        f"{bad}: sonic-reference@1.3.0#1 (official): "
        "signature ok; contents are checked while loading"
    )
    assert not any(line.startswith("verified") for line in said)


def test_unsigned_needs_opt_in_and_is_labelled(world: dict[str, Path], tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    shutil.copytree(world["v1.3.0"], stranger)
    (stranger / "release.dsse.json").unlink()
    sign_bundle(stranger, generate_key("ed25519"))
    with pytest.raises(UnsignedReleaseError, match="unknown key"):
        generate(request(world, tmp_path, bundle=stranger))
    result = generate(request(world, tmp_path, bundle=stranger, allow_unsigned=True))
    assert result.label == "unverified"
    [(_, record)] = list(read_records(tmp_path / "log.jsonl"))
    assert record.fields["label"] == "unverified"


def test_bundle_without_envelope_is_not_hashed_again(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bare = tmp_path / "bare"
    shutil.copytree(world["v1.3.0"], bare)
    (bare / "release.dsse.json").unlink()

    def rehash(path: object, **kw: object) -> object:
        raise AssertionError(f"{path} hashed again after verify_bundle digested it")

    # verify_bundle just digested the unsigned bundle: the resolver reuses those
    # digests and only the loader reads the weights again.
    monkeypatch.setattr("sonic_registry.digest.hash_file", rehash)
    monkeypatch.setattr("sonic_registry.digest.hash_files", rehash)
    result = generate(request(world, tmp_path, bundle=bare, allow_unsigned=True))
    assert result.label == "unverified"


def test_knob_without_a_signed_range_is_reported(world: dict[str, Path], tmp_path: Path) -> None:
    root = write_bundle(tmp_path / "narrow", "1.3.0")
    toml = (root / "release.toml").read_text()
    start = toml.index("[params.motion_scale]")
    end = toml.index("[params.min_resolution]")
    (root / "release.toml").write_text(toml[:start] + toml[end:])
    key = generate_key("ed25519")
    sign_bundle(root, key)
    (tmp_path / "k.pub").write_text(key.public.to_pem())
    req = request(
        world, tmp_path, bundle=root, public_keys=(tmp_path / "k.pub",),
        params={"min_resolution": SIZE, "motion_scale": 1.1},
    )  # fmt: skip
    result = generate(req)
    assert any("motion_scale=1.1 is not validated" in w for w in result.warnings)


def test_unsigned_bundle_of_published_files_is_labelled_published(
    world: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runtime counts the built-in catalog: bytes it lists are 'published', not unverified."""
    import json

    from sonic_registry.bundle import verify_bundle
    from sonic_registry.catalog import parse_catalog

    bare = tmp_path / "bare"
    shutil.copytree(world["v1.3.0"], bare)
    (bare / "release.dsse.json").unlink()
    from sonic_registry.signing import load_public_key

    described = verify_bundle(
        bare, public_keys=[load_public_key(world["pub"])], allow_unsigned=True
    )
    components = {
        role: {
            "file": comp.paths[0],
            "publisher": "test",
            "format": comp.format,
            "interface": comp.interface,
            "size": described.subjects[comp.paths[0]].size,
            "sha256": described.subjects[comp.paths[0]].sha256,
            "layouts": {"download": comp.paths[0]},
        }
        for role, comp in described.release.components.items()
    }
    doc = {"model": described.release.model, "version": "2025.1.14", "about": "test"}
    doc |= {"sources": [], "components": components, "params": {}, "data": {}}
    cat = parse_catalog([json.dumps(doc).encode()])
    monkeypatch.setattr("sonic_registry.catalog.load_catalog", lambda: cat)
    result = generate(request(world, tmp_path, bundle=bare, allow_unsigned=True))
    assert result.label == "published"
    off = request(world, tmp_path, bundle=bare, allow_unsigned=True, builtin_catalog=False)
    assert generate(off).label == "unverified"
