"""The forward pass: audio + portrait -> frames, given three already-loaded modules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .model import AudioEncoder, Motion, MotionDecoder, Renderer, audio_features

__all__ = ["Models", "Output", "generate_frames"]


@dataclass(frozen=True)
class Models:
    encoder: AudioEncoder
    decoder: MotionDecoder
    renderer: Renderer


@dataclass(frozen=True)
class Output:
    frames: np.ndarray  # (T, H, W, 3) uint8
    motion: Motion


@torch.inference_mode()
def generate_frames(
    models: Models,
    image: np.ndarray,
    audio: np.ndarray,
    *,
    frames: int,
    inference_steps: int = 25,
    dynamic_scale: float = 1.0,
    motion_scale: float = 1.0,
    device: str = "cpu",
) -> Output:
    """Run encoder -> decoder -> renderer on ``device`` and return ``frames`` frames on the host."""
    wave = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)).to(device)
    features = audio_features(wave)
    if features.shape[0] < frames:
        features = torch.nn.functional.pad(features, (0, 0, 0, frames - features.shape[0]))
    features = features[:frames]
    tokens = models.encoder(features)
    motion = models.decoder(
        tokens, dynamic_scale=dynamic_scale, motion_scale=motion_scale, steps=inference_steps
    )
    portrait = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    rendered = models.renderer(portrait, motion)
    if rendered.is_cuda:
        torch.cuda.synchronize(rendered.device)
    host = Motion(mouth=motion.mouth.cpu(), pose=motion.pose.cpu())
    return Output(frames=rendered.cpu().numpy(), motion=host)
