"""``init``: draft a ``release.toml`` from the files found in a model directory.

Roles are guessed from Sonic's file names (``audio2token`` is the audio encoder,
``audio2bucket`` the motion decoder, ...), formats from file content. The
draft is meant to be read and edited by the maintainer before signing.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .bundle import TOML_NAME, list_bundle_files
from .catalog import load_catalog
from .errors import UnreadableInputError, UsageError
from .fileio import atomic_write_text
from .formats import is_pickle_like, is_weight_file, sniff

__all__ = ["SONIC_DATA", "guess_role", "render_release_toml", "write_release_toml"]

# Sonic's checkpoints by file stem (see DESIGN.md), and the roles they fill.
_ROLE_HINTS = (
    ("audio2token", "audio_encoder"),
    ("audio2bucket", "motion_decoder"),
    ("unet", "unet"),
    ("vae", "vae"),
    ("image_encoder", "image_encoder"),
    ("clip", "image_encoder"),
    ("whisper", "whisper"),
    ("flownet", "rife"),
    ("rife", "rife"),
    ("yoloface", "face_detector"),
    ("face", "face_detector"),
)

#: Sonic's training-data assumptions (16 kHz audio on a 25 fps timeline), as ``init``
#: writes them; their one home is the built-in catalog (:mod:`sonic_registry.catalog`).
SONIC_DATA: Mapping[str, Any] = {
    key: load_catalog().releases[0].data[key]
    for key in ("sample_rate", "fps", "expand_ratio", "min_resolution", "duration_tolerance")
}

_HEADER = "# Drafted by `sonic-registry init`: check every value, then `sonic-registry sign`.\n\n"

_FORMATS = {"safetensors": "safetensors", "pickle": "pickle", "torch-zip": "pickle", "onnx": "onnx"}


def guess_role(rel_path: str) -> str:
    lowered = rel_path.lower()
    for hint, role in _ROLE_HINTS:
        if hint in lowered:
            return role
    stem = Path(rel_path).stem.lower()
    return re.sub(r"[^a-z0-9._-]+", "_", stem).strip("_.-")[:64] or "component"


def render_release_toml(root: Path, *, model: str, version: str) -> str:
    """The text of a draft ``release.toml`` for the weights under ``root``.

    Written by tomli-w, so any role name (``sonic.v2`` from ``sonic.v2.safetensors``)
    comes out as a correctly quoted table name.
    """
    import tomli_w

    from .params import SONIC_PARAMS

    found: dict[str, list[tuple[str, str]]] = {}
    for rel in list_bundle_files(root):
        if rel == TOML_NAME or not is_weight_file(root / rel):
            continue
        kind = sniff(root / rel)
        fmt = "pickle" if is_pickle_like(kind) else _FORMATS.get(kind, "other")
        found.setdefault(guess_role(rel), []).append((rel, fmt))
    if not found:
        raise UsageError(str(root), "expected weight files (.safetensors, .pth, ...), found none")
    components: dict[str, dict[str, Any]] = {}
    for role, files in sorted(found.items()):
        paths = [f for f, _ in files]
        spec: dict[str, Any] = {"path": paths[0]} if len(paths) == 1 else {"paths": paths}
        components[role] = spec | {"format": files[0][1], "interface": f"{role}/v1"}
    document = {
        "release": {"model": model, "version": version, "serial": 1, "channel": "official"},
        "components": components,
        "data": dict(SONIC_DATA),
        "params": {name: dict(spec) for name, spec in SONIC_PARAMS.items()},
        "runtime": {"reference_runtime": f">={version}"},
    }
    return _HEADER + tomli_w.dumps(document)


def write_release_toml(root: str | Path, *, model: str = "sonic", version: str = "0.1.0") -> Path:
    """Write ``root/release.toml``; never overwrites an existing one."""
    base = Path(root)
    if not base.is_dir():
        raise UnreadableInputError(str(base), "expected a model directory")
    target = base / TOML_NAME
    if target.exists():
        raise UsageError(str(target), "already exists; refusing to overwrite it")
    text = render_release_toml(base, model=model, version=version)
    # Parse what we wrote, so a draft never needs fixing before its first sign.
    from .manifest import Release

    Release.from_toml_dict(tomllib.loads(text), where=str(target))
    atomic_write_text(target, text)
    return target
