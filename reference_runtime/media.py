"""Audio in, video out: decode any audio to 16 kHz mono, write H.264 MP4 with AAC audio.

PyAV bundles libav (with libx264 and the native AAC encoder) in its wheels, so
no ``ffmpeg`` binary is needed. Synthetic inputs for the demo and the tests
(a drawn face and a speech-like signal) are made here too, deterministically.
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from sonic_registry.errors import UnreadableInputError

from . import FPS, SAMPLE_RATE

__all__ = [
    "decode_audio",
    "load_image",
    "read_video",
    "synth_face",
    "synth_speech",
    "write_video",
    "write_wav",
]


def decode_audio(path: str | Path) -> np.ndarray:
    """Decode the first audio stream of ``path`` to float32 mono at 16 kHz."""
    import av

    p = Path(path)
    chunks: list[np.ndarray] = []
    try:
        with av.open(str(p)) as container:
            if not container.streams.audio:
                raise UnreadableInputError(str(p), "no audio stream (not an audio file?)")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(container.streams.audio[0]):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
    except UnreadableInputError:
        raise
    except (av.FFmpegError, ValueError) as exc:
        raise UnreadableInputError(str(p), f"not a readable audio file: {exc}") from exc
    except OSError as exc:
        raise UnreadableInputError(str(p), f"cannot read: {exc.strerror or exc}") from exc
    if not chunks:
        raise UnreadableInputError(str(p), "contains no audio samples")
    return np.concatenate(chunks).astype(np.float32)


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Read a portrait, centre-crop it square, resize to ``size``: (3, H, W) floats in [0, 1]."""
    p = Path(path)
    try:
        with Image.open(p) as img:
            rgb = img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise UnreadableInputError(str(p), f"not a readable image: {exc}") from exc
    side = min(rgb.size)
    left = (rgb.width - side) // 2
    top = (rgb.height - side) // 2
    square = rgb.crop((left, top, left + side, top + side)).resize(
        (size, size), Image.Resampling.BICUBIC
    )
    return np.asarray(square, dtype=np.float32).transpose(2, 0, 1) / 255.0


def write_video(path: str | Path, frames: np.ndarray, audio: np.ndarray) -> None:
    """Write (T, H, W, 3) uint8 frames at 25 fps as H.264 with ``audio`` (16 kHz mono) as AAC.

    The video is muxed in memory (these are small) and written atomically, so
    a crash never leaves a half-written video under the final name.
    """
    import io

    import av

    from sonic_registry.fileio import atomic_write_bytes

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        video = container.add_stream("libx264", rate=FPS)
        video.width = int(frames.shape[2])
        video.height = int(frames.shape[1])
        video.pix_fmt = "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast", "threads": "1"}
        sound = container.add_stream("aac", rate=SAMPLE_RATE)
        sound.layout = "mono"
        for i, rgb in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode(None):
            container.mux(packet)
        step = 1024
        samples = np.asarray(audio, dtype=np.float32).reshape(1, -1)
        for start in range(0, samples.shape[1], step):
            chunk = np.ascontiguousarray(samples[:, start : start + step])
            aframe = av.AudioFrame.from_ndarray(chunk, format="flt", layout="mono")
            aframe.sample_rate = SAMPLE_RATE
            aframe.pts = start
            for packet in sound.encode(aframe):
                container.mux(packet)
        for packet in sound.encode(None):
            container.mux(packet)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(target, buffer.getvalue())


def read_video(path: str | Path) -> np.ndarray:
    """Decode every video frame of ``path`` as (T, H, W, 3) uint8 RGB."""
    import av

    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    return np.stack(frames)


def write_wav(path: str | Path, audio: np.ndarray) -> None:
    """16-bit PCM mono WAV at 16 kHz."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())


def synth_speech(seconds: float, *, seed: int = 7) -> np.ndarray:
    """A speech-like signal: voiced syllables of random length, pitch and loudness, with pauses.

    Syllable timing is irregular on purpose: a periodic envelope would make the
    cross-correlation of the sync measurement ambiguous.
    """
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    envelope = np.zeros(n)
    pitch = np.full(n, 130.0)
    pos = int(0.2 * SAMPLE_RATE)
    while pos < n:
        length = int(rng.uniform(0.09, 0.32) * SAMPLE_RATE)
        end = min(n, pos + length)
        shape = np.sin(np.linspace(0.0, np.pi, end - pos)) ** 1.5
        envelope[pos:end] = shape * rng.uniform(0.35, 1.0)
        pitch[pos:end] = rng.uniform(100.0, 190.0)
        gap = rng.uniform(0.03, 0.18) if rng.random() < 0.75 else rng.uniform(0.25, 0.6)
        pos = end + int(gap * SAMPLE_RATE)
    phase = 2.0 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 12))
    # Two fixed resonances (formant-like) so the spectrum is not a bare buzz.
    voiced = voiced * (1.0 + 0.3 * np.sin(2 * np.pi * 700.0 * t))
    noise = rng.normal(0.0, 0.02, n)
    signal = envelope * voiced * 0.25 + noise * (envelope > 0)
    return (signal / max(1e-9, float(np.abs(signal).max())) * 0.8).astype(np.float32)


def synth_face(size: int = 512) -> Image.Image:
    """A simple cartoon portrait, mouth where the renderer's geometry puts it."""
    img = Image.new("RGB", (size, size), (70, 110, 150))
    d = ImageDraw.Draw(img)
    s = size / 512.0

    def box(x0: float, y0: float, x1: float, y1: float) -> tuple[int, int, int, int]:
        return (int(x0 * s), int(y0 * s), int(x1 * s), int(y1 * s))

    d.rectangle(box(200, 380, 312, 512), fill=(225, 180, 150))  # neck
    d.ellipse(box(110, 70, 402, 440), fill=(240, 200, 170))  # face
    d.chord(box(100, 40, 412, 300), 180, 360, fill=(80, 50, 30))  # hair
    for cx in (200, 312):
        d.ellipse(box(cx - 30, 210, cx + 30, 245), fill=(255, 255, 255))
        d.ellipse(box(cx - 12, 215, cx + 12, 240), fill=(60, 40, 30))
    d.line(
        [box(256, 240, 245, 310)[:2], box(245, 310, 262, 312)[:2]],
        fill=(200, 150, 120),
        width=max(1, int(4 * s)),
    )
    d.ellipse(box(200, 360, 312, 378), fill=(200, 110, 110))  # closed lips at y ~ 0.72
    return img
