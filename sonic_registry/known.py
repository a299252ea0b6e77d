"""Where known releases come from: a registry of signed releases, the built-in catalog, or both.

``identify``, ``doctor``, ``resolve``, ``check-params``, the hooks and the
runtime ask one question, "which releases list these bytes?", of a
:class:`ReleaseSource`. :class:`KnownReleases` answers it from a
:class:`~sonic_registry.registry.Registry` (signed releases, label
``official`` or ``community``) and from the built-in catalog of the files
Sonic's authors published (:mod:`sonic_registry.catalog`, label
``published``), registry matches first. The catalog is on by default, so the
tools work with no registry, no trust store and no network;
``--no-builtin-catalog`` turns it off.

A catalog match is a :class:`~sonic_registry.registry.Match` like any other,
whose statement has channel ``published``, no signers, and as manifest digest
the sha256 of the catalog's data file: nothing about it pretends to be signed.
"""

from __future__ import annotations

import hashlib
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Protocol

from .catalog import LABEL, Catalog, PublishedFile, PublishedRelease, load_catalog
from .errors import UnreadableInputError

if TYPE_CHECKING:
    from .bundle import VerifiedStatement
    from .registry import Match, Registry

__all__ = ["KnownReleases", "ReleaseSource", "catalog_statement"]


class ReleaseSource(Protocol):
    """What the resolver, ``identify`` and ``doctor`` need of a source of releases."""

    @property
    def problems(self) -> list[str]: ...

    def lookup(self, sha256: str) -> tuple[Match, ...]: ...

    def get(self, model: str, version: str) -> VerifiedStatement: ...


_STATEMENTS: dict[bytes, VerifiedStatement] = {}


def catalog_statement(published: PublishedRelease) -> VerifiedStatement:
    """The catalog release as an *unsigned* statement with channel ``published``."""
    cached = _STATEMENTS.get(published.raw)
    if cached is not None:
        return cached
    from .bundle import SubjectDigest, VerifiedStatement
    from .signing import Envelope

    payload = published.raw
    subjects = {
        f.file: SubjectDigest(f.sha256, f.size)
        for f in published.files
        if f.sha256 is not None and f.size is not None
    }
    statement = VerifiedStatement(
        release=published.release(),
        subjects=MappingProxyType(subjects),
        channel=LABEL,
        signers=(),
        manifest_digest=hashlib.sha256(payload).hexdigest(),
        envelope=Envelope(payload=payload, payload_type="application/json", signatures=()),
    )
    _STATEMENTS[published.raw] = statement
    return statement


def _match(f: PublishedFile) -> Match:
    from .registry import Match

    return Match(catalog_statement(f.release), f.file, f.role)


class KnownReleases:
    """A registry (optional) plus the built-in catalog (optional): one :class:`ReleaseSource`."""

    def __init__(self, registry: Registry | None = None, catalog: Catalog | None = None) -> None:
        if registry is None and catalog is None:
            raise UnreadableInputError(
                "--registry", "no source of releases: give --registry or keep the built-in catalog"
            )
        self.registry = registry
        self.catalog = catalog

    @classmethod
    def builtin(cls, registry: Registry | None = None) -> KnownReleases:
        """``registry`` (if any) plus the built-in catalog: the default everywhere."""
        return cls(registry, load_catalog())

    @property
    def problems(self) -> list[str]:
        return self.registry.problems if self.registry is not None else []

    @property
    def location(self) -> str:
        parts = [self.registry.location] if self.registry is not None else []
        if self.catalog is not None:
            parts.append("built-in catalog")
        return " + ".join(parts)

    def lookup(self, sha256: str) -> tuple[Match, ...]:
        """Signed releases listing these bytes (newest first), then the catalog's match."""
        found = self.registry.lookup(sha256) if self.registry is not None else ()
        hit = self.catalog.by_sha256(sha256) if self.catalog is not None else None
        return (*found, _match(hit)) if hit is not None else found

    def get(self, model: str, version: str) -> VerifiedStatement:
        if self.registry is not None:
            try:
                return self.registry.get(model, version)
            except UnreadableInputError:
                if self.catalog is None or self.catalog.get(model, version) is None:
                    raise
        published = self.catalog.get(model, version) if self.catalog is not None else None
        if published is None:
            raise UnreadableInputError("built-in catalog", f"no release {model}@{version}")
        return catalog_statement(published)

    def close(self) -> None:
        if self.registry is not None:
            self.registry.close()

    def __enter__(self) -> KnownReleases:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
