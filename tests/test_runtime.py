"""The reference runtime: model timing, video I/O, sync measurement, and the checked generate."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reference_runtime import FPS, HOP, SAMPLE_RATE
from reference_runtime.engine import Models, generate_frames
from reference_runtime.media import (
    decode_audio,
    load_image,
    read_video,
    synth_face,
    synth_speech,
    write_video,
    write_wav,
)
from reference_runtime.model import AudioEncoder, MotionDecoder, Renderer, frame_count
from reference_runtime.runtime import GenerateRequest, generate
from reference_runtime.sync import audio_envelope, measure_offset, mouth_opening
from reference_runtime.weights import RELEASES, build_weights, write_bundle
from sonic_registry.audit import read_records
from sonic_registry.bundle import sign_bundle
from sonic_registry.errors import (
    DigestMismatchError,
    IncompatibleRuntimeError,
    MixedReleaseError,
    UnreadableInputError,
    UnsignedReleaseError,
)
from sonic_registry.signing import generate_key, save_private_key

SECONDS = 2.4
SIZE = 128


def _models(encoder_version: str, decoder_version: str) -> Models:
    enc, dec, ren = AudioEncoder(), MotionDecoder(), Renderer()
    enc.load_state_dict(build_weights(RELEASES[encoder_version])["audio_encoder"])
    dec.load_state_dict(build_weights(RELEASES[decoder_version])["motion_decoder"])
    ren.load_state_dict(build_weights(RELEASES[decoder_version])["renderer"])
    return Models(enc, dec, ren)


@pytest.mark.parametrize(
    ("encoder", "decoder", "lo", "hi"),
    [
        ("1.3.0", "1.3.0", -20.0, 20.0),
        ("1.2.0", "1.2.0", -20.0, 20.0),
        ("1.2.0", "1.3.0", 260.0, 340.0),  # lips late by ~300 ms
        ("1.3.0", "1.2.0", -340.0, -260.0),  # lips early by ~300 ms
    ],
)
def test_only_consistent_pairs_are_in_sync(
    encoder: str, decoder: str, lo: float, hi: float
) -> None:
    audio = synth_speech(6.0)
    frames = frame_count(len(audio))
    image = np.full((3, 32, 32), 0.8, dtype=np.float32)
    out = generate_frames(_models(encoder, decoder), image, audio, frames=frames)
    sync = measure_offset(audio_envelope(audio, frames), out.motion.mouth.numpy())
    assert lo <= sync.offset_ms <= hi, sync


def test_weights_are_deterministic(tmp_path: Path) -> None:
    a, b = write_bundle(tmp_path / "a", "1.3.0"), write_bundle(tmp_path / "b", "1.3.0")
    for name in ("audio2token.safetensors", "audio2bucket.safetensors", "renderer.safetensors"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    c = write_bundle(tmp_path / "c", "1.2.0")
    assert (a / "audio2token.safetensors").read_bytes() != (
        c / "audio2token.safetensors"
    ).read_bytes()


@settings(max_examples=30, deadline=None)
@given(st.integers(-12, 12), st.integers(0, 2**31 - 1))
def test_offset_measurement_recovers_a_known_shift(shift: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    envelope = np.convolve(rng.random(200) ** 4, np.ones(3), mode="same")
    mouth = np.roll(envelope, shift)
    if shift > 0:
        mouth[:shift] = 0
    elif shift < 0:
        mouth[shift:] = 0
    result = measure_offset(envelope, mouth)
    assert result.offset_ms == pytest.approx(shift * 1000 / FPS, abs=8.0)


def test_video_is_h264_with_aac_audio_and_reads_back(tmp_path: Path) -> None:
    audio = synth_speech(1.0)
    frames = np.zeros((frame_count(len(audio)), 64, 96, 3), dtype=np.uint8)
    frames[:, :, :, 0] = np.arange(frames.shape[0], dtype=np.uint8)[:, None, None] * 8
    path = tmp_path / "v.mp4"
    write_video(path, frames, audio)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.audio[0].codec_context.name == "aac"
        assert container.streams.audio[0].codec_context.sample_rate == SAMPLE_RATE
    back = read_video(path)
    assert back.shape == frames.shape
    assert np.abs(back[:, :, :, 0].astype(int) - frames[:, :, :, 0]).mean() < 4
    sound = decode_audio(path)
    # AAC adds at most one 1024-sample frame of priming/padding.
    assert abs(len(sound) - len(audio)) <= 2048
    assert not list(tmp_path.glob(".*"))  # the temp file was renamed into place


def test_audio_decoding_resamples_to_16k_mono(tmp_path: Path) -> None:
    stereo = tmp_path / "s.wav"
    import wave

    t = np.arange(44100) / 44100
    tone = (np.sin(2 * np.pi * 440 * t) * 10000).astype("<i2")
    with wave.open(str(stereo), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(np.repeat(tone, 2).tobytes())
    got = decode_audio(stereo)
    assert abs(len(got) - SAMPLE_RATE) <= HOP
    with pytest.raises(UnreadableInputError):
        decode_audio(tmp_path / "missing.wav")
    (tmp_path / "text.wav").write_text("not audio")
    with pytest.raises(UnreadableInputError):
        decode_audio(tmp_path / "text.wav")


def test_renderer_draws_a_mouth_that_opens(tmp_path: Path) -> None:
    face = tmp_path / "face.png"
    synth_face(256).save(face)
    image = load_image(face, SIZE)
    models = _models("1.3.0", "1.3.0")
    audio = synth_speech(2.0)
    out = generate_frames(models, image, audio, frames=frame_count(len(audio)))
    r = models.renderer
    opening = mouth_opening(
        out.frames,
        tuple(r.mouth_geometry.tolist()),  # type: ignore[arg-type]
        tuple(r.mouth_color.tolist()),  # type: ignore[arg-type]
        tuple(r.head_gain.tolist()),  # type: ignore[arg-type]
    )
    assert opening.max() > 0.2 and opening.min() < 0.02
    assert np.corrcoef(opening, out.motion.mouth.numpy())[0, 1] > 0.95


# --- the checked generate, end to end --------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("world")
    key = generate_key("ed25519")
    save_private_key(key, base / "official.key", None)
    (base / "official.pub").write_text(key.public.to_pem())
    roots = {}
    for version in ("1.2.0", "1.3.0"):
        roots[version] = write_bundle(base / f"b-{version}", version)
        sign_bundle(roots[version], key)
    face, speech = base / "face.png", base / "speech.wav"
    synth_face(256).save(face)
    write_wav(speech, synth_speech(SECONDS))
    return {
        "base": base,
        "pub": base / "official.pub",
        "face": face,
        "speech": speech,
        **{f"v{v}": r for v, r in roots.items()},
    }


def _request(world: dict[str, Path], tmp_path: Path, **kw: object) -> GenerateRequest:
    args: dict[str, object] = {
        "bundle": world["v1.3.0"],
        "image": world["face"],
        "audio": world["speech"],
        "out": tmp_path / "out.mp4",
        "public_keys": (world["pub"],),
        "device": "cpu",
        "params": {"min_resolution": SIZE},
        "audit_log": tmp_path / "log.jsonl",
    }
    args.update(kw)
    return GenerateRequest(**args)  # type: ignore[arg-type]


def test_generate_writes_video_and_audit_record(world: dict[str, Path], tmp_path: Path) -> None:
    lines: list[str] = []
    result = generate(_request(world, tmp_path), echo=lines.append)
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
    req = _request(world, tmp_path, components={"audio_encoder": world["v1.2.0"]})
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
    req = _request(
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
        generate(_request(world, tmp_path, runtime_version="1.2.9"))
    # 1.3 code may run the older 1.2.0 release (its specifier allows it).
    ok = generate(_request(world, tmp_path, bundle=world["v1.2.0"]))
    assert abs(ok.sync.offset_ms) < 40
    bad = tmp_path / "bad"
    shutil.copytree(world["v1.3.0"], bad)
    raw = bytearray((bad / "renderer.safetensors").read_bytes())
    raw[-2] ^= 0x10
    (bad / "renderer.safetensors").write_bytes(bytes(raw))
    with pytest.raises(DigestMismatchError):
        generate(_request(world, tmp_path, bundle=bad, out=tmp_path / "bad.mp4"))
    assert not (tmp_path / "bad.mp4").exists()


def test_unsigned_needs_opt_in_and_is_labelled(world: dict[str, Path], tmp_path: Path) -> None:
    stranger = tmp_path / "stranger"
    shutil.copytree(world["v1.3.0"], stranger)
    (stranger / "release.dsse.json").unlink()
    sign_bundle(stranger, generate_key("ed25519"))
    with pytest.raises(UnsignedReleaseError, match="unknown key"):
        generate(_request(world, tmp_path, bundle=stranger))
    result = generate(_request(world, tmp_path, bundle=stranger, allow_unsigned=True))
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
    result = generate(_request(world, tmp_path, bundle=bare, allow_unsigned=True))
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
    req = _request(
        world, tmp_path, bundle=root, public_keys=(tmp_path / "k.pub",),
        params={"min_resolution": SIZE, "motion_scale": 1.1},
    )  # fmt: skip
    result = generate(req)
    assert any("motion_scale=1.1 is not validated" in w for w in result.warnings)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reference_runtime", *args], capture_output=True, text=True
    )


def test_cli_generate_json_and_exit_codes(world: dict[str, Path], tmp_path: Path) -> None:
    common = [
        "--image", str(world["face"]), "--audio", str(world["speech"]),
        "--public-key", str(world["pub"]), "--device", "cpu", "--min-resolution", str(SIZE),
        "--audit-log", str(tmp_path / "log.jsonl"),
    ]  # fmt: skip
    proc = _cli("generate", "--bundle", str(world["v1.3.0"]), "--out", str(tmp_path / "a.mp4"),
                "--json", *common)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] and doc["release"] == "sonic-reference@1.3.0#1" and doc["audit_seq"] == 1
    proc = _cli("generate", "--bundle", str(world["v1.3.0"]), "--out", str(tmp_path / "b.mp4"),
                "--component", f"audio_encoder={world['v1.2.0']}", *common)  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "releases must not be mixed" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _cli("generate", "--bundle", str(world["v1.3.0"]), "--out", str(tmp_path / "c.mp4"),
                "--dynamic-scale", "1.5", *common)  # fmt: skip
    assert proc.returncode == 1 and "dynamic_scale=1.5 is above the allowed" in proc.stderr
    proc = _cli("generate", "--bundle", str(tmp_path / "nope"), "--out", str(tmp_path / "d.mp4"),
                *common)  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_runtime_loads_torch_free_library() -> None:
    # The library side stays torch-free even though the runtime needs torch.
    code = "import sys, sonic_registry, sonic_registry.loader; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert torch.__version__  # the runtime extra is installed here
