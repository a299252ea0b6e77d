"""Resolve a pipeline graph against a registry: one release per graph, or a refusal.

Steps (each a numbered comment in :func:`analyze_graph`):

1. the graph's own findings (old node interfaces, wrong model family) are verdicts;
2. every weight file the graph loads is hashed once (however many nodes load
   it) and identified **by digest**: a DICE-Talk ``unet.pth`` under Sonic's
   file name is whatever its bytes are, not what its name says;
3. all identified components must come from one release, unless the newest
   release among them declares the others compatible in its *signed*
   ``compatible_with``;
4. each component sits on a slot of its role and interface;
5. the runtime's version satisfies the release's ``reference_runtime`` specifier.

Parameters are read and reported (``Resolution.params``), not judged: that is
:func:`sonic_registry.params.check_params`' job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from .errors import (
    IncompatibleRuntimeError,
    MixedReleaseError,
    SonicRegistryError,
    UnreadableInputError,
    UnsafePathError,
    UnsignedReleaseError,
    raise_all,
)
from .identify import identify_digest, judge, unknown_file_advice
from .workflows import Graph, InterfaceMismatchError, WeightRef, load_graph

if TYPE_CHECKING:
    from .bundle import VerifiedStatement
    from .digest import DigestSource, FileDigest
    from .known import ReleaseSource
    from .registry import Match

__all__ = [
    "Resolution",
    "ResolvedComponent",
    "analyze_graph",
    "load_graph",
    "resolve_graph",
]

#: Weakest last: a signed release outranks the built-in catalog's unsigned one.
_CHANNEL_RANK = {"official": 0, "community": 1, "published": 2, "unverified": 3}


@dataclass(frozen=True, slots=True)
class ResolvedComponent:
    """A weight a node loads, and the release component its bytes are."""

    node: str
    node_type: str
    slot: str
    file: str | None  # relative to the models directory
    sha256: str | None
    role: str | None
    model: str | None
    version: str | None
    release_id: str | None
    training_step: int | None
    channel: str  # official / community / unverified

    def describe(self) -> str:
        where = f"node {self.node} ({self.node_type}) {self.file or self.slot}"
        if self.release_id is None:
            return f"{where}: unknown to the registry"
        step = f" step {self.training_step}" if self.training_step is not None else ""
        return f"{self.role} is {self.model} {self.version}{step} ({where})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "node_type": self.node_type,
            "slot": self.slot,
            "file": self.file,
            "sha256": self.sha256,
            "role": self.role,
            "model": self.model,
            "version": self.version,
            "release_id": self.release_id,
            "training_step": self.training_step,
            "channel": self.channel,
        }


@dataclass(frozen=True)
class Resolution:
    """What a graph resolved to, and every problem found on the way."""

    graph: Graph
    release: VerifiedStatement | None
    channel: str  # the weakest channel among the components: official/community/unverified
    components: tuple[ResolvedComponent, ...]
    params: Mapping[str, int | float]
    warnings: tuple[str, ...]
    unknown_nodes: tuple[str, ...]
    problems: tuple[SonicRegistryError, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def label(self) -> str:
        from .trust import channel_label  # lazy: keeps the workflows hook free of crypto

        return channel_label(self.channel)

    @property
    def by_node(self) -> Mapping[str, tuple[ResolvedComponent, ...]]:
        out: dict[str, list[ResolvedComponent]] = {}
        for c in self.components:
            out.setdefault(c.node, []).append(c)
        return MappingProxyType({k: tuple(v) for k, v in out.items()})

    def raise_for_problems(self) -> Resolution:
        """Raise the first problem (with all of them in ``.problems``), else return self."""
        raise_all(self.problems)
        return self

    def to_dict(self) -> dict[str, Any]:
        exit_code = max((p.exit_code for p in self.problems), default=0)
        return {
            "ok": self.ok,
            "exit_code": exit_code,
            "graph": self.graph.source,
            "format": self.graph.format,
            "release": self.release.to_dict() if self.release else None,
            "channel": self.channel,
            "label": self.label,
            "components": [c.to_dict() for c in self.components],
            "params": dict(self.params),
            "warnings": list(self.warnings),
            "unknown_nodes": list(self.unknown_nodes),
            "errors": [p.to_dict() for p in self.problems],
        }


def _models_path(models_dir: Path, rel: str, ref: WeightRef, source: str) -> Path:
    # A file name in a graph must stay inside the models directory.
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or (len(rel) > 1 and rel[1] == ":"):
        raise UnsafePathError(
            source, f"{ref.describe()}: expected a file inside the models directory, found {rel!r}"
        )
    return models_dir / rel


def _hash_all(
    paths: Mapping[str, Path], cache: DigestSource | None
) -> dict[str, FileDigest | SonicRegistryError]:
    """Each graph path's digest, or the error hashing its file; each file hashed once."""
    from .identify import hash_with_cache

    distinct = list(dict.fromkeys(paths.values()))
    found: dict[Path, FileDigest | SonicRegistryError] = {}
    try:
        found.update(zip(distinct, hash_with_cache(distinct, stat_cache=cache), strict=True))
    except SonicRegistryError:
        # Some file could not be read: hash one at a time to give each its own error.
        for path in distinct:
            try:
                found[path] = hash_with_cache([path], stat_cache=cache)[0]
            except SonicRegistryError as exc:
                found[path] = exc
    return {rel: found[path] for rel, path in paths.items()}


def _covers(chosen: VerifiedStatement, match: Match) -> bool:
    r = chosen.release
    if (match.model, match.version) == (r.model, r.version):
        return True
    return any(c.covers(match.model, match.version, match.role or "") for c in r.compatible_with)


def _release_order(statement: VerifiedStatement) -> tuple[Version, int, int]:
    r = statement.release
    return (r.parsed_version, -_CHANNEL_RANK.get(statement.channel, 4), r.serial)


def analyze_graph(
    graph: Graph,
    registry: ReleaseSource,
    models_dir: str | Path | None = None,
    *,
    runtime_version: str | None = None,
    allow_unsigned: bool = False,
    stat_cache: DigestSource | None = None,
) -> Resolution:
    """Resolve ``graph``; every problem is collected in ``Resolution.problems``."""
    problems: list[SonicRegistryError] = []
    warnings = list(graph.warnings)
    base = Path(models_dir) if models_dir is not None else None

    # Step 1: what the format adapter found is already a verdict.
    problems += [InterfaceMismatchError(graph.source, line) for line in graph.interface_errors]

    # Step 2: hash each distinct file once (in parallel), then identify each
    # distinct digest once.
    digests: dict[str, FileDigest | None] = {}
    reported: set[str] = set()  # paths whose problem is already in ``problems``
    # The files to hash, and each path's problem in graph order (None: no problem).
    to_hash: dict[str, Path] = {}
    outcome: dict[str, SonicRegistryError | None] = {}
    for ref in graph.weights:
        if ref.path is None or ref.path in digests:
            continue
        digests[ref.path] = None
        if base is None:
            outcome[ref.path] = UnreadableInputError(
                graph.source, f"{ref.describe()}: give --models-dir to check the file it loads"
            )
            continue
        try:
            path = _models_path(base, ref.path, ref, graph.source)
            outcome[ref.path] = None
            if path.is_file():
                to_hash[ref.path] = path
        except SonicRegistryError as exc:
            outcome[ref.path] = exc
    for rel, hashed in _hash_all(to_hash, stat_cache).items():
        if isinstance(hashed, SonicRegistryError):
            outcome[rel] = hashed
        else:
            digests[rel] = hashed
    for rel, error in outcome.items():
        if error is not None:
            problems.append(error)
            reported.add(rel)
    matches_of: dict[str, tuple[Match, ...]] = {}
    for hexdigest in {d.sha256 for d in digests.values() if d is not None}:
        matches_of[hexdigest] = registry.lookup(hexdigest)

    # Each weight ref -> its candidate matches (a file can be in several releases).
    candidates: list[tuple[WeightRef, str | None, tuple[Match, ...]]] = []
    for ref in graph.weights:
        if ref.path is not None:
            digest = digests.get(ref.path)
            if digest is None:
                if ref.optional or ref.path in reported or base is None:
                    continue
                problems.append(
                    UnreadableInputError(
                        str(base / ref.path),
                        f"no such file (loaded by node {ref.node} ({ref.node_type}) {ref.slot})",
                    )
                )
                continue
            found = matches_of[digest.sha256]
            if ref.component is not None and found:
                named = tuple(m for m in found if (m.model, m.version, m.role) == ref.component)
                if not named:
                    # The file is signed, but as another component than the graph names.
                    problems.append(
                        InterfaceMismatchError(
                            graph.source,
                            f"{ref.describe()}: the file is {_what(found[0])}, not "
                            f"{ref.component[2]} of {ref.component[0]} {ref.component[1]}",
                        )
                    )
                    continue
                found = named
            candidates.append((ref, digest.sha256, found))
        elif ref.component is not None:
            model, version, role = ref.component
            try:
                statement = registry.get(model, version)
            except SonicRegistryError as exc:
                problems.append(
                    UnsignedReleaseError(graph.source, f"{ref.describe()}: {exc.detail}")
                )
                continue
            comp = statement.release.components.get(role)
            if comp is None:
                problems.append(
                    InterfaceMismatchError(
                        graph.source,
                        f"{ref.describe()}: {statement.release.release_id} has no "
                        f"{role!r} component",
                    )
                )
                continue
            from .registry import Match as _Match

            candidates.append((ref, None, (_Match(statement, comp.paths[0], role),)))

    # Unknown files: refused unless the caller opted in, then labelled unverified.
    # A Git LFS pointer is never usable; what each file is comes from
    # identify's one judgement (the same words doctor and identify print).
    unknown = [(ref, sha) for ref, sha, found in candidates if not found]
    for ref, sha in unknown:
        assert base is not None and ref.path is not None and sha is not None
        digest = digests[ref.path]
        assert digest is not None
        ident = identify_digest(base / ref.path, digest, registry.lookup)
        status, advice, _ = judge(ident)
        if status == "not-downloaded":
            problems.append(UnsignedReleaseError(graph.source, f"{ref.describe()}: {advice}"))
            continue
        line = (
            f"{ref.describe()}: sha256 {sha} is unknown to the registry "
            "(no trusted release lists these bytes)"
        )
        if status == "converted":
            line += f"; {advice}"
        elif ref.expected_role == "unet" or status == "unknown":
            hint = ref.expected_role or (ident.expected.role if ident.expected else None)
            line += f"; {unknown_file_advice(hint, ident.reason)}"
        if allow_unsigned:
            warnings.append(line + "; accepted as unverified")
        else:
            problems.append(UnsignedReleaseError(graph.source, line))
    known = [(ref, sha, found) for ref, sha, found in candidates if found]

    # Step 3: one release for the whole graph. The newest release among the
    # candidates that covers every component (itself, or by its signed
    # compatible_with) is the graph's release.
    chosen: VerifiedStatement | None = None
    pool = {m.statement.manifest_digest: m.statement for _, _, found in known for m in found}
    for statement in sorted(pool.values(), key=_release_order, reverse=True):
        if all(any(_covers(statement, m) for m in found) for _, _, found in known):
            chosen = statement
            break
    picked: list[tuple[WeightRef, str | None, Match | None]] = []
    for ref, sha, found in known:
        best = found[0]
        if chosen is not None:
            best = next(
                (m for m in found if _covers(chosen, m) and m.statement is chosen),
                next(m for m in found if _covers(chosen, m)),
            )
        picked.append((ref, sha, best))
    if known and chosen is None:
        newest = max(pool.values(), key=_release_order).release
        others = sorted(
            {f"{s.release.model} {s.release.version}" for s in pool.values()}
            - {f"{newest.model} {newest.version}"}
        )
        parts = sorted({_part(ref, m) for ref, _, m in picked if m is not None})
        problems.append(
            MixedReleaseError(
                graph.source,
                ", ".join(parts) + ": releases must not be mixed "
                f"({newest.model} {newest.version} does not declare "
                f"{' or '.join(others)} compatible)",
            )
        )

    # Step 4: every component sits on a slot of its role and interface.
    known_roles = {r.expected_role for r in graph.weights if r.expected_role}
    strict_roles = graph.format == "pipeline.toml"
    comp_of_node: dict[str, Match] = {}
    for ref, _, m in picked:
        assert m is not None
        comp_of_node.setdefault(ref.node, m)
        if (
            ref.expected_role
            and m.role != ref.expected_role
            and (strict_roles or m.role is None or m.role in known_roles)
        ):
            what = f"the {m.role} component" if m.role else "a non-component file"
            problems.append(
                InterfaceMismatchError(
                    graph.source,
                    f"{ref.describe()}: loads {what} of {m.describe()}, "
                    f"expected the {ref.expected_role} component",
                )
            )
        if ref.interface and m.interface != ref.interface:
            problems.append(
                InterfaceMismatchError(
                    graph.source,
                    f"{ref.describe()}: needs interface {ref.interface!r}, "
                    f"{m.role} of {m.describe()} has {m.interface!r}",
                )
            )
    if graph.format == "pipeline.toml":
        problems += _check_edges(graph, comp_of_node)

    # Step 5: the runtime must satisfy the release's specifier (no forward compatibility).
    if chosen is not None and runtime_version is not None:
        problems += _check_runtime(chosen, runtime_version, graph.source)

    components = tuple(
        ResolvedComponent(
            node=ref.node,
            node_type=ref.node_type,
            slot=ref.slot,
            file=ref.path,
            sha256=sha,
            role=m.role if m else None,
            model=m.model if m else None,
            version=m.version if m else None,
            release_id=m.statement.release.release_id if m else None,
            training_step=m.training_step if m else None,
            channel=m.channel if m else "unverified",
        )
        for ref, sha, m in [*picked, *((r, s, None) for r, s in unknown)]
    )
    channel = max(
        (c.channel for c in components),
        key=lambda c: _CHANNEL_RANK.get(c, 4),
        default=chosen.channel if chosen else "unverified",
    )
    return Resolution(
        graph=graph,
        release=chosen,
        channel=channel,
        components=components,
        params=graph.params,
        warnings=tuple(warnings),
        unknown_nodes=graph.unknown_nodes,
        problems=tuple(_usage_first(problems)),
    )


def _what(m: Match) -> str:
    return f"{m.role or m.path} of {m.describe()}"


def _part(ref: WeightRef, m: Match) -> str:
    return f"{m.role} is {m.describe()} (node {ref.node} {ref.node_type}, {ref.path or ref.slot})"


def _usage_first(problems: list[SonicRegistryError]) -> list[SonicRegistryError]:
    # An unreadable input (exit 2) explains more than a verdict on the rest.
    return sorted(problems, key=lambda p: -p.exit_code)


def _check_edges(graph: Graph, comp_of_node: Mapping[str, Match]) -> list[SonicRegistryError]:
    out: list[SonicRegistryError] = []
    for link in graph.links:
        src, dst = comp_of_node.get(link.src), comp_of_node.get(link.dst)
        ends = [(link.src, src), (link.dst, dst)]
        if link.type:
            for node, m in ends:
                if m is not None and m.interface != link.type:
                    out.append(
                        InterfaceMismatchError(
                            graph.source,
                            f"edge {link.src} -> {link.dst} carries {link.type!r}, "
                            f"node {node} is {m.role} of {m.describe()} with interface "
                            f"{m.interface!r}",
                        )
                    )
        elif src is not None and dst is not None and src.interface != dst.interface:
            out.append(
                InterfaceMismatchError(
                    graph.source,
                    f"edge {link.src} -> {link.dst}: {src.role} produces "
                    f"{src.interface!r}, {dst.role} consumes {dst.interface!r}",
                )
            )
    return out


def _check_runtime(
    chosen: VerifiedStatement, runtime_version: str, source: str
) -> list[SonicRegistryError]:
    spec = chosen.release.runtime.get("reference_runtime")
    if spec is None:
        return []
    try:
        Version(runtime_version)
    except InvalidVersion:
        return [
            UnreadableInputError(
                source, f"runtime version: expected a PEP 440 version, found {runtime_version!r}"
            )
        ]
    if SpecifierSet(spec).contains(runtime_version, prereleases=True):
        return []
    return [
        IncompatibleRuntimeError(
            source,
            f"reference_runtime {runtime_version} cannot load {chosen.release.release_id}: "
            f"it needs reference_runtime {spec}",
        )
    ]


def resolve_graph(
    graph: Graph | str | Path,
    registry: ReleaseSource,
    models_dir: str | Path | None = None,
    *,
    runtime_version: str | None = None,
    allow_unsigned: bool = False,
    stat_cache: DigestSource | None = None,
) -> Resolution:
    """Resolve ``graph`` or raise: the first problem, with all of them in ``.problems``.

    ``graph`` may be a :class:`Graph` or a path to a ``pipeline.toml`` /
    ComfyUI workflow. Raises :class:`MixedReleaseError`,
    :class:`IncompatibleRuntimeError`, :class:`InterfaceMismatchError`,
    :class:`UnsignedReleaseError` (verdicts, exit 1) or a ``UsageError``
    (unreadable graph or file, exit 2).
    """
    g = graph if isinstance(graph, Graph) else load_graph(graph)
    return analyze_graph(
        g,
        registry,
        models_dir,
        runtime_version=runtime_version,
        allow_unsigned=allow_unsigned,
        stat_cache=stat_cache,
    ).raise_for_problems()
