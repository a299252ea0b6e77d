"""A small PNG of audio energy vs mouth opening per run, drawn with pillow (no matplotlib)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from . import FPS

__all__ = ["Trace", "plot_sync"]

WIDTH = 960
PANEL = 230
MARGIN = 40
AUDIO = (40, 90, 200)
MOUTH = (210, 40, 40)


@dataclass(frozen=True)
class Trace:
    title: str
    envelope: np.ndarray
    mouth: np.ndarray


def _normalise(values: np.ndarray) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    span = float(v.max() - v.min()) if v.size else 0.0
    return (v - v.min()) / span if span > 0 else np.zeros_like(v)


def _line(draw: ImageDraw.ImageDraw, values: np.ndarray, top: int, colour: tuple[int, ...]) -> None:
    n = len(values)
    if n < 2:
        return
    height = PANEL - 2 * MARGIN
    xs = MARGIN + np.arange(n) * (WIDTH - 2 * MARGIN) / (n - 1)
    ys = top + MARGIN + (1.0 - _normalise(values)) * height
    draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=colour, width=2)


def plot_sync(traces: Sequence[Trace], path: str | Path) -> Path:
    """One panel per trace: blue = audio energy, red = mouth opening measured from the video."""
    image = Image.new("RGB", (WIDTH, PANEL * len(traces)), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for i, trace in enumerate(traces):
        top = i * PANEL
        left, right = MARGIN, WIDTH - MARGIN
        bottom = top + PANEL - MARGIN
        draw.rectangle((left, top + MARGIN, right, bottom), outline=(180, 180, 180))
        seconds = len(trace.envelope) / FPS
        for s in range(int(seconds) + 1):
            x = left + s * (right - left) / max(seconds, 1e-9)
            draw.line((x, bottom, x, bottom + 4), fill=(120, 120, 120))
            draw.text((x - 3, bottom + 6), f"{s}s", fill=(90, 90, 90))
        draw.text((left, top + 10), trace.title, fill=(0, 0, 0))
        draw.text((right - 300, top + 10), "audio energy", fill=AUDIO)
        draw.text((right - 180, top + 10), "mouth opening (video)", fill=MOUTH)
        _line(draw, trace.envelope, top, AUDIO)
        _line(draw, trace.mouth, top, MOUTH)
    target = Path(path)
    image.save(target, format="PNG")
    return target
