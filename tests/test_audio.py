"""Audio length measured from real files made here: WAV (int, float, extensible) and FLAC."""

from __future__ import annotations

import importlib.util
import math
import struct
import wave
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sonic_registry.audio import measure_audio
from sonic_registry.errors import UnreadableInputError

needs_av = pytest.mark.skipif(
    importlib.util.find_spec("av") is None, reason="PyAV (the audio extra) is not installed"
)


def sine_pcm16(samples: int, rate: int = 16000, channels: int = 1) -> bytes:
    frames = bytearray()
    for n in range(samples):
        v = int(8000 * math.sin(2 * math.pi * 220 * n / rate))
        frames += struct.pack("<h", v) * channels
    return bytes(frames)


def write_wav(path: Path, samples: int, rate: int = 16000, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(sine_pcm16(samples, rate, channels))
    return path


def write_riff(path: Path, fmt: bytes, data: bytes, *, declared: int | None = None) -> Path:
    """A hand-made RIFF/WAVE file (for formats the wave module will not write)."""
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"LIST" + struct.pack("<I", 5) + b"junk!" + b"\x00"  # odd chunk, padded
    body += b"data" + struct.pack("<I", len(data) if declared is None else declared) + data
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


def float_wav(path: Path, samples: int, rate: int, *, extensible: bool = False) -> Path:
    channels, bits = 2, 32
    block = channels * bits // 8
    data = b"".join(struct.pack("<ff", 0.1, -0.1) for _ in range(samples))
    if extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
        fmt += struct.pack("<HHI", 22, bits, 3) + struct.pack("<H", 0x0003) + guid_tail
    else:
        fmt = struct.pack("<HHIIHH", 0x0003, channels, rate, rate * block, block, bits)
    return write_riff(path, fmt, data)


def encode(path: Path, container: str, codec: str, samples: int, rate: int = 16000) -> Path:
    """Encode a mono sine with PyAV (libav bundled in the wheel, no ffmpeg binary)."""
    import av
    import numpy as np

    pcm = np.frombuffer(sine_pcm16(samples, rate), dtype=np.int16).reshape(1, -1)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate = rate
        target = stream.codec_context.codec.audio_formats[0].name
        resampler = av.AudioResampler(format=target, layout="mono", rate=rate)
        for chunk in [*resampler.resample(frame), *resampler.resample(None)]:
            out.mux(stream.encode(chunk))
        out.mux(stream.encode(None))
    return path


# -- WAV ----------------------------------------------------------------------------------


def test_wav_16k_mono(tmp_path: Path) -> None:
    info = measure_audio(write_wav(tmp_path / "speech.wav", 16000 * 9 + 13440))
    assert info.sample_rate == 16000 and info.channels == 1
    assert info.samples == 157440
    assert info.duration == pytest.approx(9.84)
    assert info.codec == "pcm_s16"


def test_wav_stereo_44k(tmp_path: Path) -> None:
    info = measure_audio(write_wav(tmp_path / "s.wav", 44100, rate=44100, channels=2))
    assert info.duration == pytest.approx(1.0) and info.channels == 2


@pytest.mark.parametrize("extensible", [False, True])
def test_float_wav_parsed_from_riff_chunks(tmp_path: Path, extensible: bool) -> None:
    info = measure_audio(float_wav(tmp_path / "f.wav", 24000, 48000, extensible=extensible))
    assert info.duration == pytest.approx(0.5)
    assert info.sample_rate == 48000 and info.channels == 2
    assert info.codec == "pcm_f32"


def test_wav_cut_short_counts_what_is_on_disk(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "cut.wav", 16000 * 4)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # header still claims 4 s
    info = measure_audio(path)
    assert info.duration == pytest.approx(2.0, abs=0.01)


def test_streaming_wav_with_unknown_data_size(tmp_path: Path) -> None:
    fmt = struct.pack("<HHIIHH", 0x0003, 1, 8000, 32000, 4, 32)
    path = write_riff(tmp_path / "s.wav", fmt, b"\x00" * 4 * 8000, declared=0xFFFFFFFF)
    assert measure_audio(path).duration == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("riff", "riff_size"), [(b"RIFF", None), (b"RIFF", 0xFFFFFFFF), (b"RIFX", None)]
)
def test_streaming_pcm_wav_with_data_size_zero(
    tmp_path: Path, riff: bytes, riff_size: int | None
) -> None:
    """A streaming writer leaves the data size 0 until it closes: 1 s of 16 kHz PCM."""
    endian = ">" if riff == b"RIFX" else "<"
    fmt = struct.pack(endian + "HHIIHH", 0x0001, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack(endian + "I", len(fmt)) + fmt
    body += b"data" + struct.pack(endian + "I", 0) + b"\x01\x00" * 16000
    path = tmp_path / "stream.wav"
    size = len(body) if riff_size is None else riff_size
    path.write_bytes(riff + struct.pack(endian + "I", size) + body)
    info = measure_audio(path)
    assert info.duration == pytest.approx(1.0) and info.samples == 16000
    assert (info.sample_rate, info.channels, info.codec) == (16000, 1, "pcm_s16")


def test_compressed_wav_format_is_refused(tmp_path: Path) -> None:
    fmt = struct.pack("<HHIIHH", 0x0011, 1, 16000, 8000, 256, 4)  # IMA ADPCM
    path = write_riff(tmp_path / "adpcm.wav", fmt, b"\x00" * 1024)
    with pytest.raises(UnreadableInputError, match="compressed"):
        measure_audio(path)


@needs_av
@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.wav", b"", "empty file"),
        ("header-only.wav", b"RIFF\x04\x00\x00\x00WAVE", "no 'fmt ' chunk"),
        ("nodata.wav", None, "no audio samples"),
        ("notes.wav", b"hello, this is text\n" * 20, "not a readable audio file"),
        ("random.flac", bytes(range(256)) * 16, "not a readable audio file"),
    ],
)
def test_broken_files_are_one_line_errors(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is None:
        write_wav(path, 0)
    else:
        path.write_bytes(content)
    with pytest.raises(UnreadableInputError) as info:
        measure_audio(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_missing_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UnreadableInputError, match="no such audio file"):
        measure_audio(tmp_path / "nope.wav")
    with pytest.raises(UnreadableInputError, match="not a regular file"):
        measure_audio(tmp_path)


# -- compressed, through PyAV ------------------------------------------------------------


@needs_av
def test_flac_16k_counts_decoded_samples(tmp_path: Path) -> None:
    info = measure_audio(encode(tmp_path / "speech.flac", "flac", "flac", 16000 * 3 + 123))
    assert info.codec == "flac"
    assert info.sample_rate == 16000
    assert info.samples == 16000 * 3 + 123
    assert info.duration == pytest.approx(3.0076875)


@needs_av
def test_opus_in_ogg_is_exact_after_pre_skip(tmp_path: Path) -> None:
    info = measure_audio(encode(tmp_path / "speech.ogg", "ogg", "libopus", 48000 * 2, 48000))
    assert info.codec == "opus"
    assert info.duration == pytest.approx(2.0, abs=1e-3)


@needs_av
def test_truncated_flac_is_shorter_or_refused(tmp_path: Path) -> None:
    path = encode(tmp_path / "speech.flac", "flac", "flac", 16000 * 4)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    try:
        info = measure_audio(path)
    except UnreadableInputError as exc:
        assert "\n" not in str(exc)
    else:  # a cut FLAC decodes up to the cut: never longer than what is there
        assert info.duration < 4.0


@needs_av
def test_image_has_no_audio_stream(tmp_path: Path) -> None:
    from PIL import Image

    path = tmp_path / "face.png"
    Image.new("RGB", (8, 8), "white").save(path)
    with pytest.raises(UnreadableInputError, match="no audio stream"):
        measure_audio(path)


@settings(max_examples=150, deadline=None)
@given(
    body=st.binary(max_size=120),
    fmt_tag=st.sampled_from([1, 3, 6, 0xFFFE, 0x11, 0]),
    channels=st.integers(0, 3),
    rate=st.sampled_from([0, 1, 16000]),
    block=st.integers(0, 8),
    riff=st.sampled_from([b"RIFF", b"RIFX"]),
)
def test_hostile_wav_headers_give_one_line_errors_or_a_length(
    tmp_path_factory: pytest.TempPathFactory,
    body: bytes,
    fmt_tag: int,
    channels: int,
    rate: int,
    block: int,
    riff: bytes,
) -> None:
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, 16)
    data = riff + b"\xff\xff\xff\x7f" + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
    data += b"data" + body[:4] + body[4:]
    path = tmp_path_factory.mktemp("wav") / "x.wav"
    path.write_bytes(data)
    try:
        info = measure_audio(path)
    except UnreadableInputError as exc:
        assert "\n" not in str(exc)
    else:
        assert info.duration > 0 and math.isfinite(info.duration)


@needs_av
def test_mp3_with_gapless_header_counts_exactly(tmp_path: Path) -> None:
    info = measure_audio(encode(tmp_path / "speech.mp3", "mp3", "libmp3lame", 16000 * 2 + 77))
    assert info.codec.startswith("mp3")
    assert info.samples == 16000 * 2 + 77


def encode_m4a(path: Path, samples: int, rate: int = 16000) -> Path:
    """AAC in MP4 as a PyAV writer makes it: timestamped frames, so the MP4 muxer
    records the encoder's priming and the real length in an edit list."""
    from fractions import Fraction

    import av
    import numpy as np

    pcm = np.frombuffer(sine_pcm16(samples, rate), dtype=np.int16).astype(np.float32) / 32768
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=rate)
        stream.layout = "mono"
        for start in range(0, samples, 1024):
            frame = av.AudioFrame.from_ndarray(
                pcm[start : start + 1024].reshape(1, -1), format="flt", layout="mono"
            )
            frame.sample_rate, frame.pts, frame.time_base = rate, start, Fraction(1, rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@needs_av
@pytest.mark.parametrize("rate", [16000, 44100])
def test_aac_in_mp4_subtracts_priming_and_padding(tmp_path: Path, rate: int) -> None:
    """9.84 s of audio in an .m4a: AAC frames carry 1024 priming samples and a padded
    last frame; the MP4 edit list says what is real, and that is what is measured."""
    import av

    samples = round(9.84 * rate)
    path = encode_m4a(tmp_path / "speech.m4a", samples, rate)
    with av.open(str(path)) as container:  # what plain frame counting would report
        decoded = sum(f.samples for f in container.decode(container.streams.audio[0]))
    assert decoded > samples  # the padding is really there
    info = measure_audio(path)
    assert info.codec == "aac"
    assert info.sample_rate == rate
    assert info.samples == samples
    assert info.duration == pytest.approx(9.84, abs=1 / rate)


@needs_av
def test_a_correct_duration_for_an_m4a_is_accepted(tmp_path: Path) -> None:
    from test_params import sonic_release

    from sonic_registry.params import check_params

    path = encode_m4a(tmp_path / "speech.m4a", round(9.84 * 16000))
    report = check_params(sonic_release(), {}, audio=path, duration=9.84)
    assert report.ok, report.items
    assert "9.840" in report.items[0].message
