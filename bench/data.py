"""Benchmark inputs, created by the suite itself under ``bench/data/`` (gitignored).

* a Sonic-shaped safetensors model of several files whose tensors are
  pseudo-random bytes (incompressible, so no file system or cache can cheat);
* a 1,000-node ComfyUI workflow (API format) built from the Sonic lip-sync graph;
* keys: one ECDSA P-256 key, usable by both ``sonic-registry`` and OpenSSF
  ``model_signing``.

A model is rebuilt only when its spec (size, layout) changed, so repeated runs
skip the slow part.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LAYOUT",
    "SINGLE",
    "Install",
    "Keys",
    "Model",
    "ensure_install",
    "ensure_keys",
    "ensure_model",
    "ensure_workflow",
    "human",
    "parse_size",
]

#: file name -> (role, share of the model's bytes). Two 35 % + two 15 % files
#: split evenly over two processes, so ``openssl x2`` is a fair hash limit.
LAYOUT: Sequence[tuple[str, str, float]] = (
    ("unet-00001-of-00002.safetensors", "unet", 0.35),
    ("unet-00002-of-00002.safetensors", "unet", 0.35),
    ("audio2token.safetensors", "audio_encoder", 0.15),
    ("audio2bucket.safetensors", "motion_decoder", 0.15),
)
#: One big file, as upstream Sonic ships its UNet: no peer can split it over processes.
SINGLE: Sequence[tuple[str, str, float]] = (("unet.safetensors", "unet", 1.0),)
TENSORS_PER_FILE = 8
BLOCK = 64 << 20
CLI = str(Path(sys.executable).with_name("sonic-registry"))


def parse_size(text: str) -> int:
    """'256M', '1G', '4GiB', '123' -> bytes (binary units)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if t and t[-1] in units:
        return int(float(t[:-1]) * units[t[-1]])
    return int(t)


def human(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.2f} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class Model:
    """A benchmark model directory and the files a peer tool should hash."""

    root: Path
    size: int
    files: tuple[Path, ...]

    @property
    def biggest(self) -> Path:
        return max(self.files, key=lambda p: p.stat().st_size)


class _Noise:
    """Fast incompressible bytes: one urandom block, XORed with a per-block key."""

    def __init__(self, seed: int) -> None:
        import numpy as np

        self._np = np
        rng = np.random.default_rng(seed)
        self._base = rng.integers(0, 2**64 - 1, size=BLOCK // 8, dtype=np.uint64)
        self._counter = 0

    def block(self) -> bytes:
        np = self._np
        self._counter += 1
        key = np.uint64((self._counter * 0x9E3779B97F4A7C15) & (2**64 - 1))
        out: bytes = (self._base ^ key).tobytes()
        return out


def _write_safetensors(path: Path, nbytes: int, noise: _Noise) -> None:
    """A valid safetensors file of about ``nbytes`` bytes: F32 tensors of noise."""
    per = max(4, (nbytes // TENSORS_PER_FILE) // 4 * 4)
    header: dict[str, object] = {}
    offset = 0
    for i in range(TENSORS_PER_FILE):
        header[f"layers.{i}.weight"] = {
            "dtype": "F32",
            "shape": [per // 4],
            "data_offsets": [offset, offset + per],
        }
        offset += per
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    tmp = path.with_name(path.name + ".part")
    with tmp.open("wb") as fh:
        fh.write(struct.pack("<Q", len(raw)) + raw)
        left = offset
        while left > 0:
            chunk = noise.block()
            fh.write(chunk[: min(left, len(chunk))])
            left -= min(left, len(chunk))
    os.replace(tmp, path)


def _release_toml(layout: Sequence[tuple[str, str, float]]) -> str:
    roles: dict[str, list[str]] = {}
    for name, role, _ in layout:
        roles.setdefault(role, []).append(name)
    lines = [
        "[release]",
        'model = "sonic"',
        'version = "1.3.0"',
        "serial = 1",
        'channel = "official"',
        'expires = "2099-01-01T00:00:00Z"',
        "",
    ]
    for role, names in roles.items():
        lines += [
            f"[components.{role}]",
            "paths = [" + ", ".join(f'"{n}"' for n in names) + "]",
            'format = "safetensors"',
            'interface = "sonic/v2"',
            "training_step = 80000",
            "",
        ]
    lines += ["[config]", "hidden = 1024", "", "[data]", "sample_rate = 16000", "fps = 25", ""]
    lines += ["[runtime]", 'reference_runtime = ">=1.3,<1.4"', ""]
    return "\n".join(lines)


def ensure_model(
    data_dir: Path, size: int, layout: Sequence[tuple[str, str, float]] = LAYOUT
) -> Model:
    """The model of ``size`` bytes under ``data_dir`` (built once, reused while unchanged)."""
    stem = f"model-{size}" if layout is LAYOUT else f"model-single-{size}"
    root = data_dir / stem
    spec = {"size": size, "layout": [list(x) for x in layout], "tensors": TENSORS_PER_FILE}
    stamp = data_dir / f"{stem}.spec.json"
    files = tuple(root / name for name, _, _ in layout)
    if (
        stamp.is_file()
        and json.loads(stamp.read_text()) == spec
        and all(f.is_file() for f in files)
    ):
        return Model(root, size, files)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    noise = _Noise(seed=size)
    for (_, _, share), path in zip(layout, files, strict=True):
        _write_safetensors(path, int(size * share), noise)
    (root / "release.toml").write_text(_release_toml(layout))
    stamp.write_text(json.dumps(spec))
    return Model(root, size, files)


@dataclass(frozen=True)
class Keys:
    private: Path
    public: Path


def ensure_keys(data_dir: Path) -> Keys:
    """Unencrypted ECDSA P-256 key from ``sonic-registry keygen``; model_signing reads it too."""
    base = data_dir / "keys" / "bench"
    keys = Keys(base.with_name("bench.key"), base.with_name("bench.pub"))
    if not (keys.private.is_file() and keys.public.is_file()):
        base.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [CLI, "keygen", str(base), "--algorithm", "ecdsa-p256", "--no-passphrase", "--force"],
            check=True,
            capture_output=True,
        )
    return keys


def ensure_workflow(data_dir: Path, nodes: int = 1000) -> Path:
    """A ComfyUI API-format workflow of exactly ``nodes`` nodes.

    The real Sonic lip-sync graph (checkpoint loader, image/audio loaders,
    SONIC loader, pre-processing, sampler, video combine) repeated with fresh
    ids, plus preview nodes to reach the exact count. Every copy loads the
    same Sonic files, as a batch workflow would.
    """
    path = data_dir / f"workflow-{nodes}.json"
    body: dict[str, dict[str, object]] = {}
    copies, rest = divmod(nodes, 7)
    for c in range(copies):
        n = [str(c * 7 + i + 1) for i in range(7)]
        body[n[0]] = {
            "class_type": "ImageOnlyCheckpointLoader",
            "inputs": {"ckpt_name": "video/svd_xt_1_1.safetensors"},
        }
        body[n[1]] = {"class_type": "LoadImage", "inputs": {"image": f"portrait{c}.png"}}
        body[n[2]] = {"class_type": "LoadAudio", "inputs": {"audio": f"speech{c}.wav"}}
        body[n[3]] = {
            "class_type": "SONICTLoader",
            "inputs": {
                "model": [n[0], 0],
                "sonic_unet": "unet.pth",
                "ip_audio_scale": 1.0,
                "use_interframe": True,
                "dtype": "fp16",
            },
        }
        body[n[4]] = {
            "class_type": "SONIC_PreData",
            "inputs": {
                "clip_vision": [n[0], 1],
                "vae": [n[0], 2],
                "audio": [n[2], 0],
                "image": [n[1], 0],
                "weight_dtype": [n[3], 1],
                "min_resolution": 768,
                "duration": 10.0,
                "expand_ratio": 0.5,
            },
        }
        body[n[5]] = {
            "class_type": "SONICSampler",
            "inputs": {
                "model": [n[3], 0],
                "data_dict": [n[4], 0],
                "seed": 0,
                "inference_steps": 25,
                "dynamic_scale": 1.0,
                "fps": 25.0,
            },
        }
        body[n[6]] = {
            "class_type": "VHS_VideoCombine",
            "inputs": {
                "images": [n[5], 0],
                "audio": [n[2], 0],
                "frame_rate": [n[5], 1],
                "loop_count": 0,
                "filename_prefix": f"sonic{c}",
                "format": "video/h264-mp4",
                "pingpong": False,
                "save_output": True,
            },
        }
    for r in range(rest):
        body[str(copies * 7 + r + 1)] = {
            "class_type": "PreviewImage",
            "inputs": {"images": [str(r * 7 + 6), 0]},
        }
    text = json.dumps(body, indent=1)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return path


#: Sonic's upstream file names (release bundle) -> where ComfyUI loads them from.
COMFY_FILES: Sequence[tuple[str, str, str]] = (
    ("unet", "unet.pth", "sonic/unet.pth"),
    ("audio_encoder", "audio2token.pth", "sonic/audio2token.pth"),
    ("motion_decoder", "audio2bucket.pth", "sonic/audio2bucket.pth"),
    ("svd", "svd_xt_1_1.safetensors", "checkpoints/video/svd_xt_1_1.safetensors"),
)


@dataclass(frozen=True)
class Install:
    """A registry holding one signed Sonic release and a ComfyUI models folder with its files."""

    registry: Path
    models: Path
    bundle: Path


def ensure_install(data_dir: Path, keys: Keys) -> Install:
    """Small (256 KiB per file) Sonic release, registered, and installed ComfyUI-style.

    The resolver benchmark measures graph work, not hashing, so the files are small.
    """
    base = data_dir / "install"
    inst = Install(base / "registry", base / "models", base / "bundle")
    if (inst.registry / "index.sqlite").is_file() and all(
        (inst.models / rel).is_file() for _, _, rel in COMFY_FILES
    ):
        return inst
    if base.exists():
        shutil.rmtree(base)
    noise = _Noise(seed=7)
    lines = [
        "[release]",
        'model = "sonic"',
        'version = "1.3.0"',
        "serial = 1",
        'channel = "official"',
        'expires = "2099-01-01T00:00:00Z"',
        "",
    ]
    for role, name, rel in COMFY_FILES:
        inst.bundle.mkdir(parents=True, exist_ok=True)
        _write_safetensors(inst.bundle / name, 256 << 10, noise)
        target = inst.models / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(inst.bundle / name, target)
        lines += [
            f"[components.{role}]",
            f'path = "{name}"',
            'format = "safetensors"',
            'interface = "sonic/v2"',
            "training_step = 80000",
            "",
        ]
    lines += ["[runtime]", 'reference_runtime = ">=1.3,<1.4"', ""]
    (inst.bundle / "release.toml").write_text("\n".join(lines))
    subprocess.run(
        [CLI, "sign", str(inst.bundle), "--key", str(keys.private)], check=True, capture_output=True
    )
    subprocess.run(
        [
            CLI,
            "registry",
            "add",
            "--registry",
            str(inst.registry),
            "--public-key",
            str(keys.public),
            "--no-record-serial",
            str(inst.bundle / "release.dsse.json"),
        ],
        check=True,
        capture_output=True,
    )
    return inst
