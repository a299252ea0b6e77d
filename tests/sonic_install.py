"""Test helpers shared by the registry / resolver / identify / doctor tests.

Builds real signed releases (with ``conftest.make_bundle``), a registry holding
them, and a ComfyUI-style models folder whose files are copies of a release's
files, laid out where the ComfyUI_Sonic nodes load them from.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from pathlib import Path

from sonic_registry.registry import Registry
from sonic_registry.trust import TrustStore

WORKFLOWS = Path(__file__).parent / "data" / "workflows"

#: role -> file name inside a Sonic release bundle (as the upstream checkpoints are named).
SONIC_FILES: Mapping[str, str] = {
    "unet": "unet.pth",
    "audio_encoder": "audio2token.pth",
    "motion_decoder": "audio2bucket.pth",
    "svd": "svd_xt_1_1.safetensors",
}

#: bundle file name -> where ComfyUI loads it from, relative to ``models/``.
COMFY_LAYOUT: Mapping[str, tuple[str, ...]] = {
    "unet.pth": ("sonic/unet.pth",),
    "audio2token.pth": ("sonic/audio2token.pth",),
    "audio2bucket.pth": ("sonic/audio2bucket.pth",),
    "svd_xt_1_1.safetensors": (
        "checkpoints/svd_xt_1_1.safetensors",
        "checkpoints/video/svd_xt_1_1.safetensors",
    ),
}


def sonic_release(
    make_bundle: Callable[..., Path],
    name: str,
    *,
    version: str,
    step: int,
    **kwargs: object,
) -> Path:
    """A signed Sonic-shaped bundle with the upstream file names; returns its directory."""
    return make_bundle(name, version=version, step=step, files=SONIC_FILES, **kwargs)


def dice_release(make_bundle: Callable[..., Path], key: object, **kwargs: object) -> Path:
    """ComfyUI_DICE_Talk's look-alike: a community "dice-talk" release (another model).

    Its ``unet.pth`` (with ``files={"unet": "unet.pth"}``) has Sonic's file name,
    the case a digest check must catch.
    """
    return make_bundle(
        "dice",
        model="dice-talk",
        version="1.0.0",
        step=10000,
        channel="community",
        key=key,
        **kwargs,
    )


def install(bundle: Path, models_dir: Path, only: tuple[str, ...] | None = None) -> Path:
    """Copy a bundle's weight files into a ComfyUI models folder."""
    for name, targets in COMFY_LAYOUT.items():
        if only is not None and name not in only:
            continue
        src = bundle / name
        if not src.exists():
            continue
        for rel in targets:
            dst = models_dir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    return models_dir


def make_registry(root: Path, trust_file: Path, bundles: list[Path]) -> Registry:
    reg = Registry(root, TrustStore.load(trust_file))
    for b in bundles:
        reg.add(b / "release.dsse.json", record_serial=False)
    return reg
