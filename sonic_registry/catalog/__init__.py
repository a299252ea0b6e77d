"""The built-in catalog of the files Sonic's authors published (package data).

Sonic's authors sign nothing, so no signed release of the real Sonic files
exists. This package ships, as data (the way ``certifi`` ships CA roots), what
they published: release ``sonic 2025.1.14`` (the date of the initial
publication; the authors use no version numbers), each file with its role,
size, sha256 and the path it has in each real layout. The facts and their
sources are in ``sonic-2025.1.14.json`` beside this module.

Its label is **published**: "these bytes match the files Sonic's authors
published (catalog in sonic-registry X.Y), not signed by the authors". It is
never "official", which stays reserved for releases signed by a trusted
official key.

API (no network, no trust store, no torch; the data is parsed once)::

    from sonic_registry.catalog import load_catalog, LABEL

    cat = load_catalog()                 # the built-in catalog, cached
    f = cat.by_sha256(hexdigest)         # PublishedFile | None
    f = cat.by_lfs(oid, size)            # a Git LFS pointer's oid + size
    f = cat.by_path("sonic/unet.pth")    # a layout path (ComfyUI, official repo, download)
    f.role, f.file, f.size, f.sha256, f.publisher, f.layouts, f.release.key
    f.describe()                         # 'the published unet.pth (sonic 2025.1.14 unet)'
    cat.releases[0].params               # validated parameter ranges (release.toml shape)
    cat.releases[0].data                 # data assumptions (16 kHz audio, 25 fps, ...)
    cat.releases[0].release()            # a manifest.Release (channel "published")

``by_path`` matches a path by its trailing components, so
``ComfyUI/models/sonic/unet.pth`` and ``checkpoints/Sonic/unet.pth`` both name
the published UNet; a name is only a hint (what the file should be), the
verdict is always the digest. Components from other publishers (Stability AI's
SVD checkpoint, OpenAI's whisper-tiny) are listed with the digests that are
known; ``sha256`` is ``None`` where none was established (whisper-tiny), and
such a file can never match by content.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..hexdigest import is_sha256_hex

if TYPE_CHECKING:
    from ..manifest import Release

__all__ = [
    "LABEL",
    "Catalog",
    "PublishedFile",
    "PublishedRelease",
    "label_text",
    "load_catalog",
    "parse_catalog",
]

#: The channel of a catalog match: matches the published files, not signed.
LABEL = "published"


def label_text() -> str:
    """What "published" means, in the words every command prints."""
    from .. import __version__

    return (
        "matches the files Sonic's authors published "
        f"(catalog in sonic-registry {__version__}, not signed by the authors)"
    )


@dataclass(frozen=True, slots=True)
class PublishedFile:
    """One published file: its role in the release and where each layout puts it."""

    release: PublishedRelease = field(repr=False, compare=False)
    role: str
    file: str  # the upstream file name, e.g. "unet.pth"
    publisher: str
    format: str
    interface: str
    size: int | None  # None: not recorded
    sha256: str | None  # None: not recorded (cannot be matched by content)
    layouts: Mapping[str, str]  # layout name -> path relative to that layout's root
    note: str = ""

    def describe(self) -> str:
        """``the published unet.pth (sonic 2025.1.14 unet)``."""
        return (
            f"the published {self.file} ({self.release.model} {self.release.version} {self.role})"
        )

    def matches_path(self, rel: str) -> bool:
        """True when ``rel`` ends with one of this file's layout paths."""
        parts = PurePosixPath(rel.replace("\\", "/")).parts
        for layout in self.layouts.values():
            want = PurePosixPath(layout).parts
            if len(parts) >= len(want) and parts[len(parts) - len(want) :] == want:
                return True
        return False

    def to_dict(self) -> dict[str, Any]:
        return {
            "release": self.release.key,
            "role": self.role,
            "file": self.file,
            "publisher": self.publisher,
            "format": self.format,
            "size": self.size,
            "sha256": self.sha256,
            "layouts": dict(self.layouts),
            "note": self.note,
        }


@dataclass(frozen=True)
class PublishedRelease:
    """A release as its authors published it: files, parameter ranges, data assumptions."""

    model: str
    version: str
    about: str
    sources: tuple[str, ...]
    files: tuple[PublishedFile, ...]
    params: Mapping[str, Mapping[str, Any]]
    data: Mapping[str, Any]
    raw: bytes = field(default=b"", repr=False)  # the data file, as shipped

    @property
    def key(self) -> str:
        """``sonic@2025.1.14``."""
        return f"{self.model}@{self.version}"

    def file_for_role(self, role: str) -> PublishedFile | None:
        return next((f for f in self.files if f.role == role), None)

    def release(self) -> Release:
        """This release as a :class:`~sonic_registry.manifest.Release` (channel "published")."""
        return _as_release(self)


@dataclass(frozen=True)
class Catalog:
    """Every published release the package knows, with lookups by content and by path."""

    releases: tuple[PublishedRelease, ...]

    def files(self) -> tuple[PublishedFile, ...]:
        return tuple(f for r in self.releases for f in r.files)

    def by_sha256(self, sha256: str) -> PublishedFile | None:
        """The published file with this content digest (lower-case hex), if any."""
        return next((f for f in self.files() if f.sha256 is not None and f.sha256 == sha256), None)

    def by_lfs(self, oid: str, size: int) -> PublishedFile | None:
        """The file a Git LFS pointer (``oid sha256:…``, ``size``) stands for.

        Both must agree: a pointer with the published oid but another size is
        not the published file. Where the size was not recorded, the oid alone decides.
        """
        f = self.by_sha256(oid)
        if f is None or (f.size is not None and f.size != size):
            return None
        return f

    def by_path(self, rel: str) -> PublishedFile | None:
        """The published file a layout puts at ``rel`` (matched on trailing components).

        ComfyUI_Sonic's ``sonic_unet`` combo offers every file in
        ``models/sonic/``, so any other file directly in that folder (a
        fine-tune, a DICE-Talk ``unet.pth`` renamed) stands where the UNet does.
        """
        hits = [f for f in self.files() if f.matches_path(rel)]
        if not hits:
            parent = PurePosixPath(rel.replace("\\", "/")).parent
            hits = [
                f
                for f in self.files()
                if PurePosixPath(f.layouts.get("comfyui", "")).parent.parts == parent.parts[-1:]
                and f.role == "unet"
            ]
        # The longest layout path is the most specific ("sonic/RIFE/flownet.pkl").
        return max(hits, key=lambda f: max(len(p) for p in f.layouts.values()), default=None)

    def get(self, model: str, version: str) -> PublishedRelease | None:
        return next((r for r in self.releases if (r.model, r.version) == (model, version)), None)


def _parse_file(release: PublishedRelease, role: str, spec: Mapping[str, Any]) -> PublishedFile:
    sha = spec.get("sha256")
    if sha is not None and not is_sha256_hex(sha):
        raise ValueError(f"catalog {release.key} {role}: sha256 is not 64 lower-case hex")
    return PublishedFile(
        release=release,
        role=role,
        file=spec["file"],
        publisher=spec["publisher"],
        format=spec["format"],
        interface=spec["interface"],
        size=spec.get("size"),
        sha256=sha,
        layouts=MappingProxyType(dict(spec["layouts"])),
        note=spec.get("note", ""),
    )


def _parse_release(raw: bytes) -> PublishedRelease:
    doc = json.loads(raw)
    release = PublishedRelease(
        model=doc["model"],
        version=doc["version"],
        about=doc["about"],
        sources=tuple(doc["sources"]),
        files=(),
        params=MappingProxyType({k: MappingProxyType(v) for k, v in doc["params"].items()}),
        data=MappingProxyType(dict(doc["data"])),
        raw=raw,
    )
    files = tuple(_parse_file(release, role, spec) for role, spec in doc["components"].items())
    object.__setattr__(release, "files", files)  # files point back to their release
    return release


def parse_catalog(docs: Iterable[bytes]) -> Catalog:
    """A catalog from data files in the shipped format (one release per file)."""
    return Catalog(tuple(_parse_release(raw) for raw in docs))


@functools.cache
def load_catalog() -> Catalog:
    """The built-in catalog (every ``*.json`` shipped in this package), parsed once."""
    here = resources.files(__name__)
    docs = sorted((p for p in here.iterdir() if p.name.endswith(".json")), key=lambda p: p.name)
    return parse_catalog(p.read_bytes() for p in docs)


def _as_release(published: PublishedRelease) -> Release:
    from ..manifest import Component, Release, param_range

    components = {
        f.role: Component(f.role, (f.file,), f.format, f.interface) for f in published.files
    }
    params = {name: param_range(name, spec) for name, spec in published.params.items()}
    return Release(
        model=published.model,
        version=published.version,
        serial=0,
        channel=LABEL,
        created=_date_of(published.version),
        expires="9999-12-31T00:00:00Z",
        components=MappingProxyType(components),
        data=published.data,
        params=MappingProxyType(params),
    )


def _date_of(version: str) -> str:
    year, month, day = (int(x) for x in version.split("."))
    return f"{year:04d}-{month:02d}-{day:02d}T00:00:00Z"
