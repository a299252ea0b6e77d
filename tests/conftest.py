"""Fixtures that build real signed bundles, keys and trust stores in tmp dirs.

Weights are real safetensors files whose bytes depend on (version, step, role),
so two releases never share a digest by accident, and the same release built
twice is byte-identical (deterministic: tests may compare digests).
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sonic_registry.bundle import sign_bundle
from sonic_registry.signing import PrivateKey, generate_key, save_private_key
from sonic_registry.trust import TrustStore

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


def release_toml(
    *,
    model: str = "sonic",
    version: str = "1.3.0",
    serial: int = 1,
    channel: str = "official",
    step: int = 80000,
    files: Mapping[str, str] = SONIC_ROLES,
    interface: str = "sonic/v2",
    runtime: str | None = None,
    extra: str = "",
) -> str:
    lines = [
        "[release]",
        f'model = "{model}"',
        f'version = "{version}"',
        f"serial = {serial}",
        f'channel = "{channel}"',
        "",
    ]
    for role, name in files.items():
        lines += [
            f"[components.{role}]",
            f'path = "{name}"',
            'format = "safetensors"',
            f'interface = "{interface}"',
            f"training_step = {step}",
            "",
        ]
    lines += [
        "[config]",
        "hidden = 64",
        "",
        "[data]",
        "sample_rate = 16000",
        "fps = 25",
        "",
        "[params.inference_steps]",
        'type = "int"',
        "recommended = [20, 30]",
        "allowed = [15, 100]",
        'below = "below 20 steps the video gets blurry"',
        'above = "above 30 steps costs time for no gain"',
        "",
        "[params.dynamic_scale]",
        'type = "float"',
        "recommended = [1.0, 1.2]",
        "allowed = [0.8, 1.3]",
        'above = "above 1.2 expressions look exaggerated"',
        "",
        "[runtime]",
        f'reference_runtime = "{runtime or _runtime_spec(version)}"',
        "",
    ]
    return "\n".join(lines) + extra


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


@pytest.fixture
def make_key(tmp_path: Path) -> Callable[..., Keys]:
    counter = iter(range(1000))

    def make(
        name: str | None = None, algorithm: str = "ed25519", passphrase: bytes | None = None
    ) -> Keys:
        label = name or f"key{next(counter)}"
        key = generate_key(algorithm)
        key_path = tmp_path / "keys" / f"{label}.key"
        pub_path = tmp_path / "keys" / f"{label}.pub"
        key_path.parent.mkdir(exist_ok=True)
        save_private_key(key, key_path, passphrase)
        pub_path.write_text(key.public.to_pem())
        return Keys(key, key_path, pub_path)

    return make


@pytest.fixture
def official_key(make_key: Callable[..., Keys]) -> Keys:
    return make_key("official")


@pytest.fixture
def community_key(make_key: Callable[..., Keys]) -> Keys:
    return make_key("community")


@pytest.fixture
def trust_file(tmp_path: Path, official_key: Keys, community_key: Keys) -> Path:
    """trust.json trusting ``official_key`` (official) and ``community_key`` (community)."""
    path = tmp_path / "trust.json"
    store = (
        TrustStore()
        .with_key(official_key.private.public, ["official"], name="official")
        .with_key(community_key.private.public, ["community"], name="community")
    )
    store.save(path)
    return path


@pytest.fixture
def make_bundle(tmp_path: Path, official_key: Keys) -> Callable[..., Path]:
    """Build (and by default sign) a Sonic-shaped bundle; returns its directory.

    ``make_bundle("v13", version="1.3.0", step=80000)``; pass ``key=None`` with
    ``sign=False`` for an unsigned bundle, or ``key=community_key`` to sign as
    a community release (then give ``channel="community"``).
    """

    def make(
        name: str = "model",
        *,
        version: str = "1.3.0",
        serial: int = 1,
        channel: str = "official",
        step: int = 80000,
        key: Keys | None = None,
        sign: bool = True,
        files: Mapping[str, str] = SONIC_ROLES,
        **toml: Any,
    ) -> Path:
        root = tmp_path / name
        for role, fname in files.items():
            write_safetensors(root / fname, {"weight": weight_bytes(f"{version}/{step}/{role}")})
        (root / "release.toml").write_text(
            release_toml(
                version=version, serial=serial, channel=channel, step=step, files=files, **toml
            )
        )
        if sign:
            sign_bundle(root, (key or official_key).private)
        return root

    return make


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="Rewrite tests/golden/* from the current code instead of comparing.",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))
