"""The reference runtime's parts: model timing, video I/O, sync measurement, the renderer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from runtime_world import SIZE

from reference_runtime import FPS, HOP, SAMPLE_RATE
from reference_runtime.engine import Models, generate_frames
from reference_runtime.media import (
    decode_audio,
    load_image,
    read_video,
    synth_face,
    synth_speech,
    write_video,
)
from reference_runtime.model import AudioEncoder, MotionDecoder, Renderer, frame_count
from reference_runtime.sync import audio_envelope, measure_offset, mouth_opening
from reference_runtime.weights import RELEASES, build_weights, write_bundle
from sonic_registry.errors import (
    UnreadableInputError,
)


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


def test_runtime_loads_torch_free_library() -> None:
    # The library side stays torch-free even though the runtime needs torch.
    code = "import sys, sonic_registry, sonic_registry.loader; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert torch.__version__  # the runtime extra is installed here
