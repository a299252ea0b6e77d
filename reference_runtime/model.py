"""The three Sonic-shaped parts: audio encoder, motion decoder, renderer.

All three are ordinary ``torch.nn.Module``\\ s whose parameters come only from
verified safetensors files. The architecture is the same in every release (so a
1.2.0 encoder *loads* into a 1.3.0 pipeline without any error, which is exactly
the danger); what differs between releases is in the weights, as between
training steps: 1.2.0's encoder delays its tokens by 7.5 frames (300 ms) and its
decoder looks 7.5 frames ahead to compensate, while 1.3.0 has no latency on
either side. Each consistent pair is in sync; a 1.2.0 encoder feeding a 1.3.0
decoder moves the mouth about 300 ms after the sound.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional

from . import HOP

__all__ = [
    "BANDS",
    "CONTEXT",
    "TOKEN_DIM",
    "AudioEncoder",
    "Motion",
    "MotionDecoder",
    "Renderer",
    "audio_features",
    "frame_count",
]

#: Sub-windows per 40 ms frame whose RMS levels form the encoder's input.
BANDS = 8
#: Width of the token vector passed from encoder to decoder.
TOKEN_DIM = 16
#: Temporal context on each side, in frames (kernel size 2 * CONTEXT + 1).
CONTEXT = 8
KERNEL = 2 * CONTEXT + 1


def frame_count(samples: int) -> int:
    """Video frames covering ``samples`` audio samples (the last one may be partial)."""
    return max(1, -(-samples // HOP))


def audio_features(wave: torch.Tensor) -> torch.Tensor:
    """16 kHz mono waveform -> (frames, BANDS) RMS levels, normalised to the clip's loudest frame.

    Normalising makes the model indifferent to recording gain, as real audio
    front-ends are.
    """
    frames = frame_count(int(wave.shape[0]))
    padded = functional.pad(wave.float(), (0, frames * HOP - int(wave.shape[0])))
    windows = padded.reshape(frames, BANDS, HOP // BANDS)
    rms = windows.pow(2).mean(dim=-1).sqrt()
    peak = rms.mean(dim=-1).max().clamp_min(1e-8)
    return rms / peak


class AudioEncoder(nn.Module):
    """audio2token: per-frame levels -> tokens on the 25 fps timeline (with a signed latency)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(BANDS, TOKEN_DIM)
        self.temporal = nn.Conv1d(TOKEN_DIM, TOKEN_DIM, KERNEL, padding=CONTEXT, groups=TOKEN_DIM)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = self.proj(features)  # (T, D)
        tokens: torch.Tensor = self.temporal(x.t().unsqueeze(0)).squeeze(0).t()
        return tokens


@dataclass(frozen=True)
class Motion:
    """Per-frame motion: mouth opening in [0, 1] and head offset (x, y) in [-1, 1] units."""

    mouth: torch.Tensor  # (T,)
    pose: torch.Tensor  # (T, 2)


class MotionDecoder(nn.Module):
    """audio2bucket: tokens -> mouth opening and head motion, refined over ``steps`` iterations."""

    def __init__(self) -> None:
        super().__init__()
        self.temporal = nn.Conv1d(TOKEN_DIM, TOKEN_DIM, KERNEL, padding=CONTEXT)
        self.head = nn.Linear(TOKEN_DIM, 3)

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        dynamic_scale: float = 1.0,
        motion_scale: float = 1.0,
        steps: int = 25,
    ) -> Motion:
        hidden = self.temporal(tokens.t().unsqueeze(0)).squeeze(0).t()
        out = self.head(hidden)
        mouth_target = (out[:, 0] * dynamic_scale).clamp(0.0, 1.0)
        pose_target = torch.tanh(out[:, 1:]) * motion_scale
        # Iterative refinement standing in for diffusion steps: too few steps
        # leave the motion under-developed (the "blurry" end of the range).
        mouth = torch.zeros_like(mouth_target)
        pose = torch.zeros_like(pose_target)
        for _ in range(steps):
            mouth = mouth + 0.2 * (mouth_target - mouth)
            pose = pose + 0.2 * (pose_target - pose)
        return Motion(mouth=mouth, pose=pose)


class Renderer(nn.Module):
    """Portrait + motion -> RGB frames: shifts the head and opens an elliptic mouth.

    Its parameters are the mouth's colour and geometry (centre x, centre y,
    half width, largest half height, all relative to the frame) and the head's
    largest shift, so they too come from a signed file.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mouth_color = nn.Parameter(torch.zeros(3), requires_grad=False)
        self.mouth_geometry = nn.Parameter(torch.zeros(4), requires_grad=False)
        self.head_gain = nn.Parameter(torch.zeros(2), requires_grad=False)

    def forward(self, image: torch.Tensor, motion: Motion, *, chunk: int = 32) -> torch.Tensor:
        """``image`` (3, H, W) floats in [0, 1] -> (T, H, W, 3) uint8 frames."""
        _, height, width = image.shape
        frames = []
        for start in range(0, int(motion.mouth.shape[0]), chunk):
            mouth = motion.mouth[start : start + chunk]
            pose = motion.pose[start : start + chunk]
            frames.append(self._render_chunk(image, mouth, pose, height, width))
        return torch.cat(frames)

    def _render_chunk(
        self, image: torch.Tensor, mouth: torch.Tensor, pose: torch.Tensor, height: int, width: int
    ) -> torch.Tensor:
        n = int(mouth.shape[0])
        shift = pose * self.head_gain * 2.0  # grid units span 2 over the frame
        theta = torch.zeros(n, 2, 3, dtype=image.dtype, device=image.device)
        theta[:, 0, 0] = 1.0
        theta[:, 1, 1] = 1.0
        theta[:, :, 2] = -shift
        grid = functional.affine_grid(theta, [n, 3, height, width], align_corners=False)
        moved = functional.grid_sample(
            image.expand(n, -1, -1, -1), grid, padding_mode="border", align_corners=False
        )
        # The mouth moves with the head: its centre shifts by the same amount.
        cx, cy, half_w, max_half_h = self.mouth_geometry
        ys = (torch.arange(height, device=image.device, dtype=image.dtype) + 0.5) / height
        xs = (torch.arange(width, device=image.device, dtype=image.dtype) + 0.5) / width
        centre_x = cx + pose[:, 0] * self.head_gain[0]
        centre_y = cy + pose[:, 1] * self.head_gain[1]
        half_h = (mouth * max_half_h).clamp_min(1e-4)
        dx = (xs.view(1, 1, -1) - centre_x.view(-1, 1, 1)) / half_w
        dy = (ys.view(1, -1, 1) - centre_y.view(-1, 1, 1)) / half_h.view(-1, 1, 1)
        inside = 1.0 - (dx.pow(2) + dy.pow(2))
        # Soft edge about one pixel wide; a closed mouth draws (almost) nothing.
        mask = (inside * (half_h.view(-1, 1, 1) * height)).clamp(0.0, 1.0).unsqueeze(1)
        colour = self.mouth_color.view(1, 3, 1, 1)
        out = moved * (1.0 - mask) + colour * mask
        pixels: torch.Tensor = (out.clamp(0.0, 1.0) * 255.0 + 0.5).to(torch.uint8)
        return pixels.permute(0, 2, 3, 1)
