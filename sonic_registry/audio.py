"""Measure how long an audio file really is, from the file itself.

Sonic's ``duration`` parameter is typed in by hand and silently truncates or
pads the video when it disagrees with the speech track, so the length is
measured from the samples, never taken from a file name or a tag:

* WAV (``RIFF....WAVE`` or ``RIFX``: PCM, IEEE float, A-law, mu-law, and
  ``WAVE_FORMAT_EXTENSIBLE``) is measured by walking its RIFF chunks: length =
  data bytes actually on disk / block align / sample rate, so a file cut short
  counts what is there and a streaming writer's data size of 0 or 0xFFFFFFFF
  means "up to the end of the file". Only headers are read, never the samples.
* Everything else (FLAC, MP3, Opus/Ogg, AAC/M4A, video containers with an audio
  track) is decoded with PyAV (the ``audio`` extra; libav is bundled in its
  wheels, no ``ffmpeg`` binary is needed) and the decoded samples are counted,
  because container headers of compressed formats are often estimates.
  FLAC, Opus and MP3 (LAME gapless header) count exactly; AAC keeps its
  priming and frame padding, so AAC/M4A files measure about 64 ms long at
  16 kHz (see docs/params.md).

A missing, empty, truncated or non-audio file raises
:class:`~sonic_registry.errors.UnreadableInputError` with one line naming the
file and what was wrong.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from .errors import UnreadableInputError
from .fileio import reading

__all__ = ["AudioInfo", "measure_audio"]

# WAVE format tags (mmreg.h) that carry plain samples whose length we can compute.
_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_WAVE_FORMAT_ALAW = 0x0006
_WAVE_FORMAT_MULAW = 0x0007
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_LINEAR_TAGS = {_WAVE_FORMAT_PCM, _WAVE_FORMAT_IEEE_FLOAT, _WAVE_FORMAT_ALAW, _WAVE_FORMAT_MULAW}
#: How many RIFF chunks we walk before giving up on a file (guards hostile inputs).
_MAX_CHUNKS = 4096


@dataclass(frozen=True, slots=True)
class AudioInfo:
    """What was measured: the length in seconds and the stream's shape."""

    path: str
    duration: float
    sample_rate: int
    channels: int
    samples: int
    codec: str

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.path,
            "duration": self.duration,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "samples": self.samples,
            "codec": self.codec,
        }


def measure_audio(path: str | Path) -> AudioInfo:
    """Measure the audio file at ``path`` (see the module docstring for how)."""
    p = Path(path)
    if p.exists() and not p.is_file():  # a FIFO or device would block or never end
        raise UnreadableInputError(str(p), "not a regular file, expected an audio file")
    head = _read(p, 0, 12)
    if not head:
        raise UnreadableInputError(str(p), "empty file, expected audio")
    if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        info = _measure_riff(p)
    else:
        info = _measure_with_av(p)
    if info.samples <= 0 or info.duration <= 0:
        raise UnreadableInputError(str(p), "contains no audio samples")
    return info


# -- WAV ----------------------------------------------------------------------


def _read(p: Path, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset``; every way that fails is one UnreadableInputError line."""
    with reading(p, kind="audio file", missing="no such audio file") as fh:
        try:
            fh.seek(offset)
            return fh.read(size)
        except OSError as exc:
            raise UnreadableInputError(str(p), f"cannot read: {exc.strerror or exc}") from exc


def _riff_chunks(p: Path) -> dict[bytes, tuple[int, int]]:
    """Map chunk id -> (offset of its body, declared size); first occurrence wins."""
    chunks: dict[bytes, tuple[int, int]] = {}
    try:
        with p.open("rb") as fh:
            riff = fh.read(12)
            endian = ">" if riff[:4] == b"RIFX" else "<"
            file_size = p.stat().st_size
            pos = 12
            for _ in range(_MAX_CHUNKS):
                fh.seek(pos)
                header = fh.read(8)
                if len(header) < 8:
                    break
                cid = header[:4]
                (size,) = struct.unpack(endian + "I", header[4:])
                chunks.setdefault(cid, (pos + 8, size))
                if cid == b"data":
                    # The data chunk is the one we need; a streaming writer may
                    # have left its size as 0 or 0xFFFFFFFF, so stop here.
                    if size in (0, 0xFFFFFFFF):
                        chunks[cid] = (pos + 8, file_size - pos - 8)
                    break
                pos += 8 + size + (size & 1)  # chunks are padded to even sizes
    except OSError as exc:
        raise UnreadableInputError(str(p), f"cannot read: {exc.strerror or exc}") from exc
    return chunks


def _measure_riff(p: Path) -> AudioInfo:
    chunks = _riff_chunks(p)
    if b"fmt " not in chunks:
        raise UnreadableInputError(str(p), "WAV file has no 'fmt ' chunk (corrupt header)")
    if b"data" not in chunks:
        raise UnreadableInputError(str(p), "WAV file has no 'data' chunk (truncated?)")
    fmt_off, fmt_size = chunks[b"fmt "]
    endian = ">" if _read(p, 0, 4) == b"RIFX" else "<"
    fmt = _read(p, fmt_off, min(fmt_size, 64))
    if len(fmt) < 16:
        raise UnreadableInputError(str(p), f"WAV 'fmt ' chunk is {len(fmt)} bytes, expected >= 16")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack(endian + "HHIIHH", fmt[:16])
    if tag == _WAVE_FORMAT_EXTENSIBLE and len(fmt) >= 26:
        # WAVEFORMATEXTENSIBLE: the real format tag is the first two bytes of the
        # SubFormat GUID, at offset 24.
        (tag,) = struct.unpack(endian + "H", fmt[24:26])
    if tag not in _LINEAR_TAGS:
        raise UnreadableInputError(
            str(p), f"WAV format tag 0x{tag:04x} is compressed; convert to PCM or FLAC"
        )
    if rate <= 0 or channels <= 0 or block_align <= 0:
        raise UnreadableInputError(
            str(p),
            f"WAV header: rate {rate}, channels {channels}, block align {block_align}; "
            "expected all > 0",
        )
    data_off, data_size = chunks[b"data"]
    available = max(0, p.stat().st_size - data_off)
    frames = min(data_size, available) // block_align
    kind = "f" if tag == _WAVE_FORMAT_IEEE_FLOAT else "s"
    return AudioInfo(str(p), frames / rate, rate, channels, frames, f"pcm_{kind}{bits}")


# -- everything else, through PyAV --------------------------------------------


def _measure_with_av(p: Path) -> AudioInfo:
    try:
        import av
    except ImportError as exc:  # pragma: no cover - the audio extra is missing
        raise UnreadableInputError(
            str(p),
            "not a WAV file; reading other audio formats needs PyAV "
            "(pip install 'sonic-registry[audio]')",
        ) from exc
    try:
        with av.open(str(p), mode="r") as container:
            if not container.streams.audio:
                raise UnreadableInputError(str(p), "no audio stream (not an audio file?)")
            stream = container.streams.audio[0]
            window = _exact_window(container, stream)
            samples = 0
            kept = Fraction(0)
            rate = 0
            for frame in container.decode(stream):
                samples += frame.samples
                rate = rate or frame.sample_rate
                if window is not None:
                    kept += _overlap(frame, window)
            if window is not None and rate:
                samples = min(samples, round(kept * rate))
            rate = rate or int(stream.rate or 0)
            channels = int(stream.channels or 0)
            codec = str(stream.codec_context.name)
    except UnreadableInputError:
        raise
    except (av.FFmpegError, ValueError, UnicodeDecodeError) as exc:
        raise UnreadableInputError(str(p), f"not a readable audio file: {_av_reason(exc)}") from exc
    except OSError as exc:
        raise UnreadableInputError(str(p), f"cannot read: {exc.strerror or exc}") from exc
    if samples == 0:
        # libav probes leniently: random bytes can pass for a raw stream that
        # then yields nothing. No samples means nothing we can measure.
        raise UnreadableInputError(str(p), "not a readable audio file: no decodable audio samples")
    if rate <= 0:
        raise UnreadableInputError(str(p), "audio stream has no sample rate")
    return AudioInfo(str(p), samples / rate, rate, channels, samples, codec)


#: Containers whose stream duration is exact (an MP4 edit list), not estimated.
_EXACT_DURATION_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"})


def _exact_window(container: Any, stream: Any) -> tuple[Fraction, Fraction] | None:
    """The [start, end) seconds of real audio an MP4-family container declares, if any.

    AAC encoders add priming samples before the audio (1024 for FFmpeg's and
    Apple's encoders) and pad the last frame; MP4 records the real extent in an
    edit list, which libav exposes as the stream's start time and duration.
    Decoders drop the priming only when told, and never the padding, so the
    decoded frames are cut to this window. Other containers (MP3, Ogg) give no
    exact duration here: their frames are counted as decoded. An MP4 written
    without timestamps records no priming at all; nothing here can recover it.
    """
    names = set(str(container.format.name).split(","))
    if not names & _EXACT_DURATION_FORMATS or not stream.duration or stream.time_base is None:
        return None
    base = Fraction(stream.time_base)
    start = Fraction(stream.start_time or 0) * base
    return start, start + Fraction(stream.duration) * base


def _overlap(frame: Any, window: tuple[Fraction, Fraction]) -> Fraction:
    """Seconds of ``frame`` inside ``window`` (all of it when it carries no timestamp)."""
    length = Fraction(frame.samples, frame.sample_rate)
    if frame.pts is None or frame.time_base is None:
        return length
    begin = Fraction(frame.pts) * Fraction(frame.time_base)
    inside: Fraction = min(begin + length, window[1]) - max(begin, window[0])
    return max(Fraction(0), inside)


def _av_reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    return str(text).splitlines()[0] if text else type(exc).__name__
