"""Helpers the tests import: real safetensors bytes, release.toml text, key files.

Kept out of ``conftest.py`` (which pytest loads as a plugin, not a module to
import): tests say ``from helpers import release_toml``.

Weights are real safetensors files whose bytes depend on (version, step, role),
so two releases never share a digest by accident, and the same release built
twice is byte-identical (deterministic: tests may compare digests).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from sonic_registry.signing import PrivateKey

SONIC_ROLES: Mapping[str, str] = {
    "audio_encoder": "audio2token.safetensors",
    "motion_decoder": "audio2bucket.safetensors",
    "unet": "unet.safetensors",
}


def write_safetensors(path: Path, tensors: Mapping[str, bytes], dtype: str = "F32") -> None:
    """A minimal, valid safetensors file (1-D float32 tensors) without numpy."""
    header: dict[str, Any] = {}
    offset = 0
    for name, data in tensors.items():
        header[name] = {
            "dtype": dtype,
            "shape": [len(data) // 4],
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        for data in tensors.values():
            fh.write(data)


def weight_bytes(seed: str, n_floats: int = 256) -> bytes:
    """Deterministic float32 bytes derived from ``seed``."""
    out = bytearray()
    counter = 0
    while len(out) < n_floats * 4:
        block = hashlib.sha256(f"{seed}/{counter}".encode()).digest()
        for i in range(0, 32, 4):
            (v,) = struct.unpack("<I", block[i : i + 4])
            out += struct.pack("<f", (v / 2**32) - 0.5)
        counter += 1
    return bytes(out[: n_floats * 4])


def release_document(
    *,
    model: str = "sonic",
    version: str = "1.3.0",
    serial: int = 1,
    channel: str = "official",
    step: int = 80000,
    files: Mapping[str, str] = SONIC_ROLES,
    interface: str = "sonic/v2",
    runtime: str | None = None,
) -> dict[str, Any]:
    """A Sonic-shaped ``release.toml`` as the dict ``tomllib`` would read from it."""
    components = {
        role: {
            "path": name,
            "format": "safetensors",
            "interface": interface,
            "training_step": step,
        }
        for role, name in files.items()
    }
    return {
        "release": {"model": model, "version": version, "serial": serial, "channel": channel},
        "components": components,
        "config": {"hidden": 64},
        "data": {"sample_rate": 16000, "fps": 25},
        "params": {
            "inference_steps": {
                "type": "int",
                "recommended": [20, 30],
                "allowed": [15, 100],
                "below": "below 20 steps the video gets blurry",
                "above": "above 30 steps costs time for no gain",
            },
            "dynamic_scale": {
                "type": "float",
                "recommended": [1.0, 1.2],
                "allowed": [0.8, 1.3],
                "above": "above 1.2 expressions look exaggerated",
            },
        },
        "runtime": {"reference_runtime": runtime or _runtime_spec(version)},
    }


def release_toml(*, extra: str = "", **fields: Any) -> str:
    """:func:`release_document` written by tomli-w, then ``extra`` TOML text appended."""
    return tomli_w.dumps(release_document(**fields)) + extra


def _runtime_spec(version: str) -> str:
    """Releases x.y.* need reference_runtime >=x.y,<x.(y+1)."""
    major, minor = version.split(".")[:2]
    return f">={major}.{minor},<{major}.{int(minor) + 1}"


@dataclass(frozen=True)
class Keys:
    """A generated key with its files on disk."""

    private: PrivateKey
    key_path: Path
    pub_path: Path

    @property
    def keyid(self) -> str:
        return self.private.keyid


def replace_in_file(path: Path, old: str, new: str) -> None:
    """Edit ``path`` in place; fails if ``old`` is not there once, so no edit is silently lost."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times in {path}"
    path.write_text(text.replace(old, new))
