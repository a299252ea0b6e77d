"""Generation log records for executed Sonic prompts.

A record answers "which release made this video?": the release and its
manifest digest, each component's file and digest, the parameters that took
effect, the audio and the digest of every file the prompt saved. It is
appended to the same hash-chained log ``sonic-registry audit`` reads
(:class:`~sonic_registry.audit.AuditLog`), so ``audit find OUTPUT`` works.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ..audit import output_digest, runtime_versions
from ..manifest import format_time

if TYPE_CHECKING:
    from .guard import Verdict

__all__ = ["generation_fields", "saved_outputs"]


def saved_outputs(outputs: Mapping[str, Any], output_dir: str | Path) -> list[Path]:
    """Files a finished prompt saved, from ComfyUI's history ``outputs``.

    Each output node reports lists of ``{filename, subfolder, type}``; only
    ``type == "output"`` files are kept (previews go to the temp folder and are
    deleted), and only names that stay inside the output folder.
    """
    root = Path(output_dir)
    found: list[Path] = []
    for node_out in outputs.values():
        if not isinstance(node_out, Mapping):
            continue
        for items in node_out.values():
            for item in items if isinstance(items, list) else ():
                if not isinstance(item, Mapping) or item.get("type") != "output":
                    continue
                name, sub = item.get("filename"), item.get("subfolder") or ""
                if not isinstance(name, str) or not isinstance(sub, str):
                    continue
                rel = PurePosixPath(sub.replace("\\", "/")) / name
                if rel.is_absolute() or ".." in rel.parts:
                    continue
                path = root / rel
                if path.is_file() and path not in found:
                    found.append(path)
    return found


def _effective(params: Mapping[str, int | float], audio_seconds: float | None) -> dict[str, Any]:
    """The parameters as ComfyUI_Sonic applies them (it clips duration to the audio)."""
    out: dict[str, Any] = dict(params)
    duration = params.get("duration")
    if duration is not None and audio_seconds is not None:
        out["duration"] = min(float(duration), audio_seconds)
        out["duration_requested"] = duration
    return out


def generation_fields(
    verdict: Verdict,
    prompt_id: str,
    outputs: list[Path],
    *,
    time: datetime | None = None,
) -> dict[str, Any]:
    """The fields of one log record for a Sonic prompt ComfyUI executed."""
    res = verdict.resolution
    statement = res.release if res is not None else None
    audio = verdict.audio
    saved = [output_digest(p) for p in outputs]
    return {
        "time": format_time(time or datetime.now(UTC)),
        "source": "comfyui",
        "prompt_id": prompt_id,
        "release": (
            {
                "id": statement.release.release_id,
                "manifest_sha256": statement.manifest_digest,
                "channel": statement.channel,
            }
            if statement is not None
            else None
        ),
        "components": [
            {
                "node": c.node,
                "node_type": c.node_type,
                "role": c.role,
                "file": c.file,
                "sha256": c.sha256,
                "release_id": c.release_id,
                "channel": c.channel,
            }
            for c in (res.components if res is not None else ())
        ],
        "runtime": runtime_versions(),
        "device": "comfyui",
        "params": _effective(
            res.params if res is not None else {}, audio.duration if audio else None
        ),
        "warnings": [f.message[0] for f in verdict.warnings],
        "audio": (
            {"path": audio.path, "duration": audio.duration, **_sha(audio.path)}
            if audio is not None
            else None
        ),
        "output": saved[0] if saved else None,
        "outputs": saved,
    }


def _sha(path: str) -> dict[str, Any]:
    d = output_digest(Path(path))
    return {"sha256": d["sha256"], "size": d["size"]}
