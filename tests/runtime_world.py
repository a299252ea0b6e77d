"""The demo world the reference-runtime tests share: two signed releases, a face, speech.

Each test file builds it once (a module-scoped fixture calling :func:`build_world`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reference_runtime.media import synth_face, synth_speech, write_wav
from reference_runtime.runtime import GenerateRequest
from reference_runtime.weights import write_bundle
from sonic_registry.bundle import sign_bundle
from sonic_registry.signing import generate_key, save_private_key

SECONDS = 2.4
SIZE = 128


def build_world(base: Path) -> dict[str, Path]:
    """Releases 1.2.0 and 1.3.0 signed by one key, a face image and speech under ``base``."""
    key = generate_key("ed25519")
    save_private_key(key, base / "official.key", None)
    (base / "official.pub").write_text(key.public.to_pem())
    roots = {}
    for version in ("1.2.0", "1.3.0"):
        roots[version] = write_bundle(base / f"b-{version}", version)
        sign_bundle(roots[version], key)
    face, speech = base / "face.png", base / "speech.wav"
    synth_face(256).save(face)
    write_wav(speech, synth_speech(SECONDS))
    return {
        "base": base,
        "pub": base / "official.pub",
        "face": face,
        "speech": speech,
        **{f"v{v}": r for v, r in roots.items()},
    }


def request(world: dict[str, Path], tmp_path: Path, **kw: object) -> GenerateRequest:
    args: dict[str, object] = {
        "bundle": world["v1.3.0"],
        "image": world["face"],
        "audio": world["speech"],
        "out": tmp_path / "out.mp4",
        "public_keys": (world["pub"],),
        "device": "cpu",
        "params": {"min_resolution": SIZE},
        "audit_log": tmp_path / "log.jsonl",
    }
    args.update(kw)
    return GenerateRequest(**args)  # type: ignore[arg-type]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reference_runtime", *args], capture_output=True, text=True
    )


def common_args(world: dict[str, Path], tmp_path: Path) -> list[str]:
    """The CLI options every ``generate`` of the world's 1.3.0 release needs."""
    return [
        "--image", str(world["face"]), "--audio", str(world["speech"]),
        "--public-key", str(world["pub"]), "--device", "cpu", "--min-resolution", str(SIZE),
        "--audit-log", str(tmp_path / "log.jsonl"),
    ]  # fmt: skip
