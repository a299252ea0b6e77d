"""The fields of one log record: which release made a video, with what, from what.

:func:`generation_record` builds them; :class:`~.log.AuditLog` appends them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .. import __version__
from ..fileio import reading
from ..manifest import Release, format_time

if TYPE_CHECKING:
    from ..audio import AudioInfo
    from ..digest import FileDigest

__all__ = [
    "VerifiedLike",
    "file_digests",
    "generation_record",
    "output_digest",
    "runtime_versions",
]


class VerifiedLike(Protocol):
    """What :func:`generation_record` needs from ``bundle.VerifiedRelease``."""

    @property
    def release(self) -> Release: ...
    @property
    def manifest_digest(self) -> str: ...
    @property
    def files(self) -> Mapping[str, FileDigest]: ...
    @property
    def channel(self) -> str: ...


def file_digests(path: Path) -> tuple[str, str, int]:
    """(sha256, md5, size) of a file in one read; md5 because video tools print it."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    size = 0
    with reading(path) as fh:
        while chunk := fh.read(1 << 20):
            sha.update(chunk)
            md5.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), md5.hexdigest(), size


def output_digest(path: str | Path) -> dict[str, Any]:
    """``{path, sha256, md5, size}`` of a generated file, as records store it."""
    sha, md5, size = file_digests(Path(path))
    return {"path": str(path), "sha256": sha, "md5": md5, "size": size}


def runtime_versions() -> dict[str, str | None]:
    import platform
    from importlib import metadata

    def version_of(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    # Read torch's version from its metadata: importing torch to log it would
    # cost seconds and is not needed to know which build ran.
    return {
        "sonic_registry": __version__,
        "torch": version_of("torch"),
        "python": platform.python_version(),
    }


def _component(role: str, source: VerifiedLike, main: VerifiedLike) -> dict[str, Any]:
    """One role's entry: its files' digests, interface and step (and release if not main's)."""
    comp = source.release.components[role]
    entry: dict[str, Any] = {
        "paths": {name: source.files[name].sha256 for name in comp.paths if name in source.files},
        "interface": comp.interface,
        "training_step": comp.training_step,
    }
    if source is not main:
        entry["release"] = source.release.release_id
        entry["manifest_sha256"] = source.manifest_digest
    return entry


def generation_record(
    verified: VerifiedLike,
    params: Mapping[str, Any],
    *,
    sources: Mapping[str, VerifiedLike] | None = None,
    audio: str | Path | AudioInfo | None = None,
    duration: float | None = None,
    output: str | Path | None = None,
    device: str = "cpu",
    warnings: Sequence[str] = (),
    runtime: Mapping[str, str | None] | None = None,
    time: datetime | None = None,
) -> dict[str, Any]:
    """The fields of one log record for a generation made from ``verified``.

    ``sources`` maps a role to the verified release that supplied it when that
    is not ``verified`` (a forced mix of releases); such a component also names
    its own release and manifest digest. ``runtime`` adds or overrides version
    entries (the reference runtime adds its own version); torch's version is
    read from package metadata.
    """
    from ..audio import AudioInfo, measure_audio

    release = verified.release
    by_role = {role: verified for role in release.components} | dict(sources or {})
    components = {role: _component(role, source, verified) for role, source in by_role.items()}
    record: dict[str, Any] = {
        "time": format_time(time or datetime.now(UTC)),
        "release": {
            "id": release.release_id,
            "manifest_sha256": verified.manifest_digest,
            "channel": verified.channel,
        },
        "components": components,
        "runtime": {**runtime_versions(), **(runtime or {})},
        "device": str(device),
        "params": dict(params),
        "duration": duration,
        "warnings": list(warnings),
    }
    if audio is not None:
        info = audio if isinstance(audio, AudioInfo) else measure_audio(audio)
        sha, _md5, size = file_digests(Path(info.path))
        record["audio"] = {
            "path": str(info.path),
            "sha256": sha,
            "size": size,
            "duration": info.duration,
            "sample_rate": info.sample_rate,
        }
    else:
        record["audio"] = None
    record["output"] = output_digest(output) if output is not None else None
    return record
