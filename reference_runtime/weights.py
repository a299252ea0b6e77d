"""Build the demo releases' weights deterministically (no download) and lay out bundles.

Each release is a directory holding one safetensors file per role and a
``release.toml``; ``sonic-registry sign`` (or :func:`sonic_registry.bundle.sign_bundle`)
then writes ``release.dsse.json``. The weights are analytic plus seeded noise,
so the same version always produces byte-identical files:

* channel 0 of the token carries the frame's loudness, the mouth follows it;
* the other channels are seeded random projections that drive head motion;
* the encoder's temporal kernel places its taps at the release's latency
  (1.2.0: 7.5 frames = 300 ms late, 1.3.0: none), and the decoder's kernel
  looks ahead by the same amount, as a decoder trained on that encoder would.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .model import BANDS, CONTEXT, KERNEL, TOKEN_DIM

__all__ = [
    "COMMUNITY_VERSION",
    "RELEASES",
    "ReleaseSpec",
    "build_weights",
    "release_toml",
    "write_bundle",
]

FILES = {
    "audio_encoder": "audio2token.safetensors",
    "motion_decoder": "audio2bucket.safetensors",
    "renderer": "renderer.safetensors",
}
INTERFACES = {
    "audio_encoder": "audio_tokens/v1",
    "motion_decoder": "audio_tokens/v1",
    "renderer": "motion/v1",
}


@dataclass(frozen=True)
class ReleaseSpec:
    """What distinguishes one demo release's weights from another's."""

    version: str
    latency_frames: float  # encoder delay; the decoder looks this far ahead
    training_step: int
    seed: int
    runtime: str
    channel: str = "official"
    mouth_color: tuple[float, float, float] = (0.30, 0.02, 0.06)


RELEASES = {
    "1.2.0": ReleaseSpec("1.2.0", 7.5, 50000, 1200, ">=1.2,<2"),
    "1.3.0": ReleaseSpec("1.3.0", 0.0, 80000, 1300, ">=1.3,<1.4"),
}
#: A community fine-tune of 1.3.0 (other mouth colour), signed by a community key.
COMMUNITY_VERSION = "1.3.1"
RELEASES[COMMUNITY_VERSION] = ReleaseSpec(
    COMMUNITY_VERSION, 0.0, 90000, 1310, ">=1.3,<1.4", "community", (0.45, 0.05, 0.25)
)


def _taps(shift: float) -> torch.Tensor:
    """A kernel whose output at t reads the input at t + shift (split across two taps)."""
    kernel = torch.zeros(KERNEL, dtype=torch.float64)
    pos = CONTEXT + shift
    lo = int(pos // 1)
    frac = pos - lo
    kernel[lo] += 1.0 - frac
    if frac:
        kernel[lo + 1] += frac
    return kernel


def _smooth(shift: float, sigma: float) -> torch.Tensor:
    """A Gaussian window centred on ``shift``, for smooth head motion."""
    idx = torch.arange(KERNEL, dtype=torch.float64) - CONTEXT - shift
    window = torch.exp(-0.5 * (idx / sigma) ** 2)
    return window / window.sum()


def build_weights(spec: ReleaseSpec) -> dict[str, dict[str, torch.Tensor]]:
    """role -> state dict for one release; deterministic in ``spec``."""
    gen = torch.Generator().manual_seed(spec.seed)
    # --- audio encoder: loudness in channel 0, seeded projections elsewhere.
    proj_w = torch.randn(TOKEN_DIM, BANDS, generator=gen, dtype=torch.float64) * 0.5
    proj_w[0] = 1.0 / BANDS
    proj_b = torch.zeros(TOKEN_DIM, dtype=torch.float64)
    proj_b[1:] = -0.5 * proj_w[1:].sum(dim=1)  # centre the motion channels
    # Conv1d is a correlation: out[t] = sum_k w[k] x[t + k - CONTEXT]; a delay
    # of L frames reads x[t - L].
    enc_t = _taps(-spec.latency_frames).expand(TOKEN_DIM, 1, KERNEL).clone()
    encoder = {
        "proj.weight": proj_w,
        "proj.bias": proj_b,
        "temporal.weight": enc_t,
        "temporal.bias": torch.zeros(TOKEN_DIM, dtype=torch.float64),
    }
    # --- motion decoder: look ahead by the encoder's latency to undo it.
    dec_t = torch.zeros(TOKEN_DIM, TOKEN_DIM, KERNEL, dtype=torch.float64)
    dec_t[0, 0] = _taps(spec.latency_frames)
    mix = torch.randn(TOKEN_DIM - 1, TOKEN_DIM - 1, generator=gen, dtype=torch.float64)
    mix = mix / (TOKEN_DIM - 1) ** 0.5
    smooth = _smooth(spec.latency_frames, 2.5)
    dec_t[1:, 1:] = mix.unsqueeze(-1) * smooth
    head_w = torch.zeros(3, TOKEN_DIM, dtype=torch.float64)
    head_w[0, 0] = 1.15
    head_w[1:, 1:] = torch.randn(2, TOKEN_DIM - 1, generator=gen, dtype=torch.float64) * 0.35
    head_b = torch.tensor([-0.08, 0.0, 0.0], dtype=torch.float64)
    decoder = {
        "temporal.weight": dec_t,
        "temporal.bias": torch.zeros(TOKEN_DIM, dtype=torch.float64),
        "head.weight": head_w,
        "head.bias": head_b,
    }
    renderer = {
        "mouth_color": torch.tensor(spec.mouth_color, dtype=torch.float64),
        # centre x, centre y, half width, largest half height (relative to the frame)
        "mouth_geometry": torch.tensor([0.5, 0.72, 0.11, 0.075], dtype=torch.float64),
        "head_gain": torch.tensor([0.02, 0.015], dtype=torch.float64),
    }
    return {
        "audio_encoder": {k: v.float().contiguous() for k, v in encoder.items()},
        "motion_decoder": {k: v.float().contiguous() for k, v in decoder.items()},
        "renderer": {k: v.float().contiguous() for k, v in renderer.items()},
    }


def _param(
    kind: str,
    recommended: list[int] | list[float],
    allowed: list[int] | list[float],
    below: str,
    above: str,
) -> dict[str, Any]:
    return {
        "type": kind,
        "recommended": recommended,
        "allowed": allowed,
        "below": below,
        "above": above,
    }


def release_toml(spec: ReleaseSpec, *, model: str = "sonic-reference") -> str:
    """The maintainer-authored ``release.toml`` for one demo release (written by tomli-w)."""
    import tomli_w

    components = {
        role: {
            "path": name,
            "format": "safetensors",
            "interface": INTERFACES[role],
            "training_step": spec.training_step,
        }
        for role, name in FILES.items()
    }
    document: dict[str, Any] = {
        "release": {"model": model, "version": spec.version, "serial": 1, "channel": spec.channel},
        "components": components,
        "config": {
            "bands": BANDS,
            "token_dim": TOKEN_DIM,
            "context_frames": CONTEXT,
            "encoder_latency_ms": spec.latency_frames * 40.0,
        },
        "data": {
            "sample_rate": 16000,
            "fps": 25,
            "expand_ratio": 0.5,
            "min_resolution": 128,
            "training_data": "synthetic-reference-v1",
            "duration_tolerance": 0.04,
        },
        "params": {
            "inference_steps": _param(
                "int",
                [20, 30],
                [15, 100],
                "below 20 steps the motion is under-developed (blurry, weak mouth)",
                "above 30 steps costs time for no visible gain",
            ),
            "dynamic_scale": _param(
                "float",
                [1.0, 1.2],
                [0.5, 1.3],
                "below 1.0 the mouth barely moves",
                "above 1.2 the mouth motion is exaggerated",
            ),
            "motion_scale": _param(
                "float",
                [1.0, 1.1],
                [0.5, 1.2],
                "below 1.0 the head looks frozen",
                "above 1.1 the head motion jitters",
            ),
            "min_resolution": _param(
                "int",
                [256, 1024],
                [128, 2048],
                "below 256 pixels the face loses detail",
                "above 1024 pixels costs time for no visible gain",
            ),
        },
        "runtime": {"reference_runtime": spec.runtime, "torch": ">=2.1"},
    }
    return tomli_w.dumps(document)


def write_bundle(directory: str | Path, version: str) -> Path:
    """Write the unsigned bundle of release ``version`` into ``directory``; returns it."""
    from safetensors.torch import save_file

    spec = RELEASES[version]
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    for role, tensors in build_weights(spec).items():
        # One metadata entry only: safetensors writes metadata from a hash map,
        # so several entries would come out in varying order (varying digests).
        meta = {"component": f"sonic-reference {version} {role}"}
        save_file(tensors, str(root / FILES[role]), metadata=meta)
    (root / "release.toml").write_text(release_toml(spec), encoding="utf-8")
    return root
