"""Audio/visual sync of a generated video, measured from the output itself.

The audio side is the energy envelope of the speech (RMS per 40 ms frame); the
visual side is the mouth opening read back from the decoded video frames (the
share of pixels in the mouth box that have the mouth's colour). The offset is
the lag that maximises their normalised cross-correlation, refined to a
fraction of a frame by fitting a parabola through the peak. A positive offset
means the mouth moves *after* the sound (the video lags the audio).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import FPS, HOP

__all__ = ["SyncResult", "audio_envelope", "measure_offset", "mouth_opening"]

#: Largest offset searched, in frames (+-600 ms).
MAX_LAG = 15


@dataclass(frozen=True)
class SyncResult:
    offset_ms: float
    correlation: float  # peak normalised correlation in [-1, 1]

    @property
    def offset_text(self) -> str:
        """``+300 ms`` (never ``-0 ms``)."""
        return f"{round(self.offset_ms):+d} ms"

    def to_dict(self) -> dict[str, float]:
        return {"offset_ms": round(self.offset_ms, 1), "correlation": round(self.correlation, 3)}


def audio_envelope(audio: np.ndarray, frames: int) -> np.ndarray:
    """RMS of each 40 ms frame, ``frames`` long (zero-padded or cut)."""
    padded = np.zeros(frames * HOP, dtype=np.float64)
    n = min(len(audio), frames * HOP)
    padded[:n] = audio[:n]
    return np.asarray(np.sqrt((padded.reshape(frames, HOP) ** 2).mean(axis=1)), dtype=np.float64)


def mouth_opening(
    frames: np.ndarray,
    geometry: tuple[float, float, float, float],
    colour: tuple[float, float, float],
    head_gain: tuple[float, float],
) -> np.ndarray:
    """Per frame, the share of the mouth box (grown by the largest head shift) in mouth colour."""
    _, height, width, _ = frames.shape
    cx, cy, half_w, max_half_h = geometry
    gx, gy = head_gain
    x0 = max(0, int((cx - half_w - gx) * width))
    x1 = min(width, int(np.ceil((cx + half_w + gx) * width)))
    y0 = max(0, int((cy - max_half_h - gy) * height))
    y1 = min(height, int(np.ceil((cy + max_half_h + gy) * height)))
    box = frames[:, y0:y1, x0:x1, :].astype(np.float32) / 255.0
    distance = np.linalg.norm(box - np.asarray(colour, dtype=np.float32), axis=-1)
    return np.asarray((distance < 0.2).mean(axis=(1, 2)), dtype=np.float64)


def measure_offset(envelope: np.ndarray, mouth: np.ndarray, *, fps: int = FPS) -> SyncResult:
    """Lag (ms) of ``mouth`` behind ``envelope`` by normalised cross-correlation."""
    n = min(len(envelope), len(mouth))
    a = envelope[:n] - envelope[:n].mean()
    b = mouth[:n] - mouth[:n].mean()
    if n < 3 or not a.any() or not b.any():
        return SyncResult(0.0, 0.0)
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    max_lag = min(MAX_LAG, n - 2)
    lags = np.arange(-max_lag, max_lag + 1)
    corr = np.array(
        [
            float(np.dot(a[: n - lag], b[lag:]))
            if lag >= 0
            else float(np.dot(a[-lag:], b[: n + lag]))
            for lag in lags
        ]
    )
    i = int(np.argmax(corr))
    shift = 0.0
    if 0 < i < len(corr) - 1:
        left, mid, right = corr[i - 1], corr[i], corr[i + 1]
        denom = left - 2.0 * mid + right
        if denom < 0:
            shift = 0.5 * (left - right) / denom
    return SyncResult(float((lags[i] + shift) * 1000.0 / fps), float(corr[i]))
