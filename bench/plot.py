"""Throughput vs model size as a PNG, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from .data import human

__all__ = ["plot_throughput"]

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
W, H = 900, 560
LEFT, RIGHT, TOP, BOTTOM = 80, 260, 75, 70


def plot_throughput(
    path: Path, series: Mapping[str, Sequence[tuple[int, float]]], title: str
) -> None:
    """``series``: tool -> [(size in bytes, GB/s)]; x axis is log2(size)."""
    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(img)
    try:
        font = ImageFont.load_default(size=14)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    points = [p for pts in series.values() for p in pts]
    if not points:
        img.save(path)
        return
    sizes = sorted({s for s, _ in points})
    xs = [math.log2(s) for s in sizes]
    x0, x1 = min(xs) - 0.5, max(xs) + 0.5
    ymax = max(v for _, v in points) * 1.15 or 1.0
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def px(size: int) -> float:
        return LEFT + (math.log2(size) - x0) / (x1 - x0) * pw

    def py(v: float) -> float:
        return TOP + ph - v / ymax * ph

    draw.text((LEFT, 12), title, fill="black", font=font)
    draw.rectangle((LEFT, TOP, LEFT + pw, TOP + ph), outline="black")
    step = _nice_step(ymax)
    v = 0.0
    while v <= ymax:
        y = py(v)
        draw.line((LEFT, y, LEFT + pw, y), fill=(225, 225, 225))
        draw.text((LEFT - 45, y - 7), f"{v:g}", fill="black", font=font)
        v += step
    for s in sizes:
        x = px(s)
        draw.line((x, TOP + ph, x, TOP + ph + 5), fill="black")
        draw.text((x - 25, TOP + ph + 10), human(s), fill="black", font=font)
    draw.text((LEFT + pw // 2 - 40, H - 30), "model size", fill="black", font=font)
    draw.text((10, TOP - 25), "GB/s (higher is better)", fill="black", font=font)
    for i, (name, pts) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        coords = [(px(s), py(v)) for s, v in sorted(pts)]
        if len(coords) > 1:
            draw.line(coords, fill=color, width=3)
        for x, y in coords:
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), fill=color)
        ly = TOP + 10 + i * 24
        draw.line((W - RIGHT + 15, ly + 8, W - RIGHT + 40, ly + 8), fill=color, width=3)
        draw.text((W - RIGHT + 48, ly), name, fill="black", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)


def _nice_step(top: float) -> float:
    raw = top / 6
    mag = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * mag >= raw:
            return m * mag
    return 10 * mag
