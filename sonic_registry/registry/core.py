"""The registry a caller queries: one index in front of one source of envelopes.

Sources (see :mod:`.local`, :mod:`.sources`, :mod:`.tuf_client`):

- a directory: ``releases/<model>/<version>/<serial>.dsse.json`` plus the
  rebuildable ``index.sqlite`` and ``releases.json`` (read and written);
- a published directory over ``file://`` / ``http(s)://``: read through its
  signed TUF metadata when the caller pins the registry's ``root.json``, else
  through the unsigned ``releases.json`` with a warning;
- envelopes or verified statements the caller already holds (in memory).

Nothing but the envelopes is trusted. Every answer is re-checked against an
envelope verified with the *caller's* trust store, so a server (or a local
attacker) who edits an index can at worst hide a release, which makes its
files "unknown" and therefore refused, never accepted. Constructing a
:class:`Registry` does no I/O beyond a stat; the first query does the work.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from packaging.version import Version

from ..errors import SonicRegistryError, UnreadableInputError, UsageError, VerificationError
from . import index as ix
from .local import LocalSource, read_envelope_file
from .sources import MemorySource, PlainRemoteSource

if TYPE_CHECKING:
    from ..bundle import VerifiedStatement
    from ..trust import TrustStore
    from .fetch import Fetcher
    from .tuf_sync import Prefetch

__all__ = ["AddResult", "Match", "Registry", "ReleaseSummary", "open_registry", "start_refresh"]

MEMORY = ":memory:"


class Source(Protocol):
    """What the facade needs from a source: its index rows and envelope bytes."""

    location: str
    writable: bool

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[Any]: ...

    def read(self, rel: str) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Match:
    """One verified release that lists a file with this digest."""

    statement: VerifiedStatement
    path: str  # the file's name inside the release bundle
    role: str | None  # None for a listed file that is no component (release.toml, configs)

    @property
    def model(self) -> str:
        return self.statement.release.model

    @property
    def version(self) -> str:
        return self.statement.release.version

    @property
    def channel(self) -> str:
        return self.statement.channel

    @property
    def training_step(self) -> int | None:
        if self.role is None:
            return None
        return self.statement.release.components[self.role].training_step

    @property
    def interface(self) -> str:
        return "" if self.role is None else self.statement.release.components[self.role].interface

    def describe(self) -> str:
        """``sonic 1.3.0 step 80000`` (the words a mixed-release error uses)."""
        step = self.training_step
        return f"{self.model} {self.version}" + (f" step {step}" if step is not None else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "serial": self.statement.release.serial,
            "release_id": self.statement.release.release_id,
            "role": self.role,
            "path": self.path,
            "channel": self.channel,
            "official": self.channel == "official",
            "training_step": self.training_step,
            "manifest_digest": self.statement.manifest_digest,
        }


@dataclass(frozen=True, slots=True)
class AddResult:
    statement: VerifiedStatement
    path: Path
    added: bool  # False when the same manifest was already stored


class ReleaseSummary(NamedTuple):
    """One release as ``registry list`` shows it: what its verified envelope said.

    ``data`` is the JSON of :meth:`VerifiedStatement.to_dict`, decoded only
    for ``--json``, so listing 10,000 cached releases parses no JSON at all
    (a tuple, not a frozen dataclass: ten thousand of them build 3x faster).
    """

    model: str
    version: str
    serial: int
    channel: str
    expires: str
    roles: tuple[str, ...]
    data: str

    @classmethod
    def of(cls, s: VerifiedStatement) -> ReleaseSummary:
        r = s.release
        return cls(
            r.model,
            r.version,
            r.serial,
            s.channel,
            r.expires,
            tuple(r.components),
            json.dumps(s.to_dict()),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = json.loads(self.data)
        return out


def _remote_source(
    location: str,
    trust: TrustStore,
    problems: list[str],
    verify: Any,
    fetcher: Fetcher | None,
    tuf_root: Path | None,
) -> Source:
    """TUF when a root is pinned (now, or cached earlier), else the plain listing.

    Nothing is downloaded here; the source refreshes on its first query.
    """
    from .fetch import default_fetcher

    fetch = fetcher or default_fetcher()
    root = _tuf_root(location, tuf_root)
    if root is not None:
        from .tuf_client import TufSource

        return TufSource(location, root, trust, problems, fetch)
    return PlainRemoteSource(location, problems, fetch, verify)


def _tuf_root(location: str, tuf_root: Path | None) -> bytes | None:
    """A remote registry's pinned TUF root (given now, or cached), or None: the plain listing."""
    if urllib.parse.urlsplit(location).scheme != "file" or tuf_root is not None:
        from .tuf_client import pinned_root

        return pinned_root(location, tuf_root)
    return None


def start_refresh(location: str | Path, *, tuf_root: Path | None = None) -> Prefetch | None:
    """Start a TUF registry's first refresh requests now; give the result to open_registry.

    A command that loads the trust store next (cryptography's imports take
    tens of milliseconds) overlaps that with the round trip of the two
    requests every refresh starts with. Nothing is trusted or stored here;
    the refresh checks what they return. None when ``location`` is not a
    remote TUF registry.
    """
    location = str(location)
    if urllib.parse.urlsplit(location).scheme not in ("http", "https", "file"):
        return None
    root = _tuf_root(location, tuf_root)
    if root is None:
        return None
    from .fetch import default_fetcher
    from .tuf_client import start_requests

    return start_requests(location, root, default_fetcher())


class Registry:
    """A registry read (and, when local, written) with the caller's trust store."""

    def __init__(
        self,
        location: str | Path,
        trust: TrustStore,
        *,
        fetcher: Fetcher | None = None,
        tuf_root: Path | None = None,
    ) -> None:
        self.trust = trust
        self.location = str(location)
        self.problems: list[str] = []  # envelopes skipped while reading, one line each
        self._verified: dict[str, VerifiedStatement] = {}
        scheme = urllib.parse.urlsplit(self.location).scheme
        self._local: LocalSource | None = None
        self._source: Source
        if self.location == MEMORY:
            self._source = MemorySource(MEMORY, self.problems)
        elif scheme in ("http", "https", "file"):
            self._source = _remote_source(
                self.location, trust, self.problems, self._verify, fetcher, tuf_root
            )
        elif len(scheme) > 1:
            raise UsageError(
                self.location,
                f"unsupported registry URL scheme {scheme!r} "
                "(expected a directory, file://, http:// or https://)",
            )
        else:
            self._local = LocalSource(Path(location), self._verify, self.problems)
            self._source = self._local

    @property
    def root(self) -> Path | None:
        """The registry directory, or None for a remote or in-memory registry."""
        return None if self._local is None else self._local.root

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- in-memory registries ------------------------------------------------------

    def _memory(self) -> MemorySource:
        assert isinstance(self._source, MemorySource)
        return self._source

    @classmethod
    def from_envelopes(
        cls,
        envelopes: Iterable[str | Path | bytes],
        trust: TrustStore,
        *,
        skip_invalid: bool = False,
    ) -> Registry:
        """A read-only, in-memory registry of these signed releases.

        For callers that hold the envelopes themselves, such as a model
        repository's own ``release.dsse.json`` in the pre-commit hook. Each
        envelope is verified with ``trust``; one that does not verify raises,
        or with ``skip_invalid`` is left out and named in :attr:`problems`.
        """
        reg = cls(MEMORY, trust)
        for item in envelopes:
            where = "release.dsse.json" if isinstance(item, bytes) else str(item)
            try:
                data = item if isinstance(item, bytes) else read_envelope_file(Path(item))
                statement = reg._verify(data, where)
            except SonicRegistryError as exc:
                if not skip_invalid:
                    raise
                reg.problems.append(f"{where}: skipped: {exc}")
                continue
            reg._memory().remember(statement, hashlib.sha256(data).hexdigest())
        return reg

    @classmethod
    def from_statements(
        cls, statements: Iterable[VerifiedStatement], trust: TrustStore
    ) -> Registry:
        """A read-only, in-memory registry of statements the caller has just verified.

        The runtime verifies every bundle it runs; handing over the statements
        spares it serialising, re-parsing and re-verifying the same envelopes.
        """
        reg = cls(MEMORY, trust)
        for statement in statements:
            reg._memory().remember(statement, statement.manifest_digest)
        return reg

    # -- verification ----------------------------------------------------------------

    def _verify(self, data: bytes, where: str) -> VerifiedStatement:
        from ..bundle import verify_envelope
        from ..signing import Envelope

        return verify_envelope(Envelope.from_json(data, where=where), self.trust, where=where)

    def _statement(self, rel: str) -> VerifiedStatement:
        cached = self._verified.get(rel)
        if cached is None and isinstance(self._source, MemorySource):
            cached = self._source.statements.get(rel)
        if cached is None:
            cached = self._verify(self._source.read(rel), f"{self.location}/{rel}")
        self._verified[rel] = cached
        return cached

    # -- writing -----------------------------------------------------------------------

    def add(self, envelope: str | Path | bytes, *, record_serial: bool = True) -> AddResult:
        """Verify a signed release and store it; refuse a serial rollback.

        Idempotent: adding the same manifest twice stores it once.
        """
        if self._local is None:
            raise UsageError(self.location, "a remote or in-memory registry is read-only")
        if isinstance(envelope, bytes):
            data, where = envelope, "release.dsse.json"
        else:
            path = Path(envelope)
            if path.is_dir():  # a signed bundle: take its envelope
                path = path / "release.dsse.json"
            where = str(path)
            data = read_envelope_file(path)
        # Verify before anything is written (signatures, threshold, expiry, and
        # the trust store's own rollback record); the source refuses rollback.
        statement = self._verify(data, where)
        target, added = self._local.add(data, where, statement)
        if added and record_serial:
            from ..trust import record_verified_serial

            record_verified_serial(self.trust, statement, where=where)
        return AddResult(statement, target, added=added)

    def rebuild_index(self) -> int:
        """Recreate ``index.sqlite`` and ``releases.json`` from the envelopes alone.

        Envelopes that no longer verify with this trust store are left out and
        named in :attr:`problems`. Returns the number of releases indexed.
        """
        if self._local is None:
            raise UsageError(self.location, "a remote or in-memory registry is read-only")
        return self._local.rebuild()

    # -- queries -------------------------------------------------------------------------

    def _note(self, line: str) -> None:
        if line not in self.problems:
            self.problems.append(line)

    def lookup(self, sha256: str) -> tuple[Match, ...]:
        """Every verified release listing a file with this sha256 (newest first).

        The index only says where to look; the answer comes from the verified
        envelope, so an index row the envelope does not back is ignored.
        """
        matches: list[Match] = []
        for path, _role, rel in self._source.rows(ix.LOOKUP_SQL, (sha256,)):
            try:
                statement = self._statement(str(rel))
            except (VerificationError, UsageError) as exc:
                self._note(f"{rel}: skipped: {exc}")
                continue
            subject = statement.subjects.get(str(path))
            if subject is None or subject.sha256 != sha256:
                continue
            component = statement.release.component_for_path(str(path))
            matches.append(Match(statement, str(path), component.role if component else None))
        matches.sort(key=lambda m: (Version(m.version), m.statement.release.serial), reverse=True)
        return tuple(matches)

    def get(self, model: str, version: str) -> VerifiedStatement:
        """The newest verified serial of ``model@version``."""
        found = self._source.rows(ix.GET_SQL, (model, version))
        if not found:
            raise UnreadableInputError(
                self.location, f"no release {model}@{version} in the registry"
            )
        return self._statement(str(found[0][0]))

    def summaries(self) -> Iterator[ReleaseSummary]:
        """Every release that verifies, by model and PEP 440 version: ``registry list``.

        A TUF-published registry streams them from its cache, where each
        envelope was verified with this same trust store when it arrived, so
        listing 10,000 releases neither verifies 10,000 signatures again nor
        holds them all in memory. The refresh (and any :attr:`problems`) happens
        in this call, before the first release is read. Consume the iterator
        before :meth:`close`.
        """
        cached = getattr(self._source, "summaries", None)
        if cached is not None:
            rows: Iterator[ReleaseSummary] = cached()
            return rows
        return iter([ReleaseSummary.of(s) for s in self.releases()])

    def releases(self) -> list[VerifiedStatement]:
        """Every release (newest serial per model@version) that verifies, sorted."""
        out: list[VerifiedStatement] = []
        for (rel,) in self._source.rows(ix.ALL_SQL):
            try:
                out.append(self._statement(str(rel)))
            except (VerificationError, UsageError) as exc:
                self.problems.append(f"{rel}: skipped: {exc}")
        out.sort(key=lambda s: (s.release.model, Version(s.release.version)))
        return out


def open_registry(
    location: str | Path,
    trust: TrustStore,
    *,
    tuf_root: Path | None = None,
    fetcher: Fetcher | None = None,
) -> Registry:
    """A registry directory, or a ``file://`` / ``http(s)://`` URL of a published one.

    ``tuf_root`` pins the published registry's TUF ``root.json`` (kept in the
    per-registry cache afterwards, so later calls need not pass it again).
    ``fetcher`` may be what :func:`start_refresh` returned for the same registry.
    """
    return Registry(location, trust, tuf_root=tuf_root, fetcher=fetcher)
