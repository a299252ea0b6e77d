"""Resolve a pipeline graph against known releases: one release per graph, or a refusal.

:func:`analyze_graph` runs these steps, each a function a reader can name:

1. the graph's own findings (old node interfaces, wrong model family) are verdicts;
2. :func:`hash_graph_files` hashes every file the graph loads once (however many
   nodes load it); :func:`match_graph_files` identifies each **by digest** (a
   DICE-Talk ``unet.pth`` under Sonic's file name is whatever its bytes are);
   :func:`judge_unknown_files` gives files no release lists identify's verdict
   (refused, or unverified with ``allow_unsigned``; an LFS pointer never passes);
3. :func:`choose_release`: all components must come from one release, unless the
   chosen release declares the others compatible in its *signed* ``compatible_with``;
4. :func:`check_slots`: each component sits on a slot of its role and interface
   (strictly where the graph says so: ``Graph.strict_roles``, ``Graph.typed_edges``);
5. :func:`check_runtime`: the runtime satisfies the release's ``reference_runtime``;
6. :func:`judge_params`: the parameters against the release's signed ranges,
   with :func:`sonic_registry.params.check_graph_params`, the judgement the
   workflows hook and ``check-params --workflow`` share.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

from .errors import (
    IncompatibleRuntimeError,
    MixedReleaseError,
    SonicRegistryError,
    UnreadableInputError,
    UnsafePathError,
    UnsignedReleaseError,
)
from .identify import identify_digest, judge, unknown_file_advice, unsigned_refusal
from .model_folders import ModelFolders, as_model_folders
from .resolution import Resolution, ResolvedComponent
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
    "check_runtime",
    "load_graph",
    "resolve_graph",
]

#: Weakest last: a signed release outranks the built-in catalog's unsigned one.
_CHANNEL_RANK = {"official": 0, "community": 1, "published": 2, "unverified": 3}


def _models_path(models: ModelFolders, rel: str, ref: WeightRef, source: str) -> Path | None:
    """The file ``rel`` names where the node loads it from (None: not there).

    A file name in a graph must stay inside the models directory; the file found
    must stay inside the folder it was found in (:meth:`ModelFolders.locate`).
    """
    pure = PurePosixPath(rel)
    if pure.is_absolute() or ".." in pure.parts or (len(rel) > 1 and rel[1] == ":"):
        raise UnsafePathError(
            source, f"{ref.describe()}: expected a file inside the models directory, found {rel!r}"
        )
    try:
        return models.locate(ref.folder, rel)
    except UnsafePathError as exc:
        raise UnsafePathError(source, f"{ref.describe()}: {exc}") from exc


def _hash_all(
    paths: Mapping[str, Path], cache: DigestSource | None
) -> dict[str, FileDigest | SonicRegistryError]:
    """Each graph path's digest, or the error hashing its file; each file hashed once."""
    from .digest import hash_with_cache

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


@dataclass
class _Work:
    """What the steps of :func:`analyze_graph` share: inputs, findings so far."""

    graph: Graph
    registry: ReleaseSource
    models: ModelFolders | None
    allow_unsigned: bool
    problems: list[SonicRegistryError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    digests: dict[str, FileDigest | None] = field(default_factory=dict)
    located: dict[str, Path] = field(default_factory=dict)  # graph path -> the file read
    reported: set[str] = field(default_factory=set)  # paths whose problem is already reported


_Candidate = tuple[WeightRef, str | None, tuple["Match", ...]]
_Picked = tuple[WeightRef, str | None, "Match"]


def analyze_graph(
    graph: Graph,
    registry: ReleaseSource,
    models_dir: str | Path | ModelFolders | None = None,
    *,
    runtime_version: str | None = None,
    allow_unsigned: bool = False,
    stat_cache: DigestSource | None = None,
    check_params: bool = True,
    require_signed: bool = False,
) -> Resolution:
    """Resolve ``graph``; every problem is collected in ``Resolution.problems``.

    ``models_dir`` is one models folder (the CLI's ``--models-dir``) or a
    :class:`~sonic_registry.model_folders.ModelFolders` (the ComfyUI pack: each
    loader's folders searched in ComfyUI's order, ``extra_model_paths.yaml``'s too).

    ``require_signed`` is the policy that only a release signed by a trusted key
    counts: the built-in catalog's published release (unsigned) is then refused.

    ``check_params=False`` leaves step 6 to a caller that judges the parameters
    itself with more input (the ComfyUI pack measures the audio for ``duration``).
    """
    models = as_model_folders(models_dir) if models_dir is not None else None
    work = _Work(graph, registry, models, allow_unsigned, warnings=list(graph.warnings))
    # Step 1: what the format adapter found is already a verdict.
    work.problems += [InterfaceMismatchError(graph.source, x) for x in graph.interface_errors]
    # Step 2: hash each distinct file once, identify each distinct digest once.
    hash_graph_files(work, stat_cache)
    candidates = match_graph_files(work)
    # Step 3: one release for the whole graph.
    chosen, picked = choose_release(work, [c for c in candidates if c[2]])
    if require_signed and chosen is not None:
        work.problems += unsigned_refusal(graph.source, [chosen])
    unknown = judge_unknown_files(work, [c for c in candidates if not c[2]], chosen)
    # Step 4: every component sits on a slot of its role and interface.
    check_slots(work, picked)
    # Step 5: the runtime must satisfy the release's specifier (no forward compatibility).
    if chosen is not None and runtime_version is not None:
        work.problems += check_runtime(chosen, runtime_version, graph.source)
    # Step 6: the parameters, judged against the release's signed ranges.
    if check_params:
        judge_params(work, chosen)
    return _resolution(work, chosen, picked, unknown)


def judge_params(work: _Work, chosen: VerifiedStatement | None) -> None:
    """Step 6: :func:`~sonic_registry.params.check_graph_params` on the graph's values.

    The ranges are the chosen release's; with no release (every file unknown,
    accepted as unverified) there are no validated ranges to judge against.
    """
    from .errors import ParameterRangeError
    from .params import check_graph_params

    if chosen is None:
        return
    statement = chosen
    try:
        report = check_graph_params(statement.release, work.graph)
    except SonicRegistryError as exc:
        work.problems += exc.problems
        return
    work.problems += [ParameterRangeError(work.graph.source, c.message) for c in report.errors]
    work.warnings += [c.message for c in report.warnings]


def hash_graph_files(work: _Work, stat_cache: DigestSource | None) -> None:
    """Step 2a: the digest of every file the graph names (``work.digests``), in parallel."""
    graph, models = work.graph, work.models
    to_hash: dict[str, Path] = {}
    outcome: dict[str, SonicRegistryError | None] = {}  # each path's problem, graph order
    for ref in graph.weights:
        if ref.path is None or ref.path in work.digests:
            continue
        work.digests[ref.path] = None
        if models is None:
            outcome[ref.path] = UnreadableInputError(
                graph.source, f"{ref.describe()}: give --models-dir to check the file it loads"
            )
            continue
        try:
            path = _models_path(models, ref.path, ref, graph.source)
            outcome[ref.path] = None
            if path is not None:
                to_hash[ref.path] = path
                work.located[ref.path] = path
        except SonicRegistryError as exc:
            outcome[ref.path] = exc
    for rel, hashed in _hash_all(to_hash, stat_cache).items():
        if isinstance(hashed, SonicRegistryError):
            outcome[rel] = hashed
        else:
            work.digests[rel] = hashed
    for rel, error in outcome.items():
        if error is not None:
            work.problems.append(error)
            work.reported.add(rel)


def match_graph_files(work: _Work) -> list[_Candidate]:
    """Step 2b: each weight ref and the releases that list its bytes (maybe several)."""
    matches_of: dict[str, tuple[Match, ...]] = {}
    for hexdigest in {d.sha256 for d in work.digests.values() if d is not None}:
        matches_of[hexdigest] = work.registry.lookup(hexdigest)
    candidates: list[_Candidate] = []
    for ref in work.graph.weights:
        if ref.path is not None:
            digest = work.digests.get(ref.path)
            if digest is None:
                if not (ref.optional or ref.path in work.reported or work.models is None):
                    work.problems.append(
                        work.models.missing(
                            ref.folder,
                            ref.path,
                            f"loaded by node {ref.node} ({ref.node_type}) {ref.slot}",
                        )
                    )
                continue
            found = _named_component(work, ref, matches_of[digest.sha256])
            if found is not None:
                candidates.append((ref, digest.sha256, found))
        elif ref.component is not None:
            match = _component_match(work, ref, ref.component)
            if match is not None:
                candidates.append((ref, None, (match,)))
    return candidates


def _named_component(
    work: _Work, ref: WeightRef, found: tuple[Match, ...]
) -> tuple[Match, ...] | None:
    """The matches a ref that names its component accepts; None (reported) if none."""
    if ref.component is None or not found:
        return found
    named = tuple(m for m in found if (m.model, m.version, m.role) == ref.component)
    if not named:
        # The file is signed, but as another component than the graph names.
        model, version, role = ref.component
        work.problems.append(
            InterfaceMismatchError(
                work.graph.source,
                f"{ref.describe()}: the file is {_what(found[0])}, not {role} of {model} {version}",
            )
        )
        return None
    return named


def _component_match(work: _Work, ref: WeightRef, component: tuple[str, str, str]) -> Match | None:
    """A ref naming a release component without a file: that component, if it exists."""
    from .registry import Match

    model, version, role = component
    try:
        statement = work.registry.get(model, version)
    except SonicRegistryError as exc:
        work.problems.append(
            UnsignedReleaseError(work.graph.source, f"{ref.describe()}: {exc.detail}")
        )
        return None
    comp = statement.release.components.get(role)
    if comp is None:
        work.problems.append(
            InterfaceMismatchError(
                work.graph.source,
                f"{ref.describe()}: {statement.release.release_id} has no {role!r} component",
            )
        )
        return None
    return Match(statement, comp.paths[0], role)


def judge_unknown_files(
    work: _Work, unknown: list[_Candidate], chosen: VerifiedStatement | None
) -> list[tuple[WeightRef, str | None]]:
    """Step 2c: files no release lists: refused, or with ``allow_unsigned`` unverified.

    What each file is comes from identify's one judgement (the words doctor and
    identify print); a Git LFS pointer is never usable, whatever the opt-in. A
    file of a role whose digest no known release records (whisper-tiny: the
    catalog says "not recorded") cannot be judged: a warning, unless the chosen
    release signs a digest for that role.
    """
    out: list[tuple[WeightRef, str | None]] = []
    for ref, sha, _ in unknown:
        assert ref.path is not None and sha is not None
        digest = work.digests[ref.path]
        assert digest is not None
        ident = identify_digest(work.located[ref.path], digest, work.registry.lookup)
        status, advice, _ = judge(ident)
        out.append((ref, sha))
        if status == "not-downloaded":
            work.problems.append(
                UnsignedReleaseError(work.graph.source, f"{ref.describe()}: {advice}")
            )
            continue
        if _unrecorded(ref.expected_role, chosen):
            work.warnings.append(
                f"{ref.describe()}: not checked: no known release records a digest of "
                f"{ref.expected_role} (sha256 {sha}); sign a release listing it to check it"
            )
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
        if work.allow_unsigned:
            work.warnings.append(line + "; accepted as unverified")
        else:
            work.problems.append(UnsignedReleaseError(work.graph.source, line))
    return out


def _unrecorded(role: str, chosen: VerifiedStatement | None) -> bool:
    """True when no digest of ``role`` is known: the catalog records none and the
    chosen release signs none."""
    from .catalog import load_catalog

    published = load_catalog().releases[0].file_for_role(role) if role else None
    if published is None or published.sha256 is not None:
        return False
    comp = chosen.release.components.get(role) if chosen is not None else None
    return comp is None or not any(p in chosen.subjects for p in comp.paths)  # type: ignore[union-attr]


def choose_release(
    work: _Work, known: list[_Candidate]
) -> tuple[VerifiedStatement | None, list[_Picked]]:
    """Step 3: the newest release that covers every component (itself, or by its signed
    ``compatible_with``), and the match each ref takes from it; a mix is a problem."""
    chosen: VerifiedStatement | None = None
    pool = {m.statement.manifest_digest: m.statement for _, _, found in known for m in found}
    for statement in sorted(pool.values(), key=_release_order, reverse=True):
        if all(any(_covers(statement, m) for m in found) for _, _, found in known):
            chosen = statement
            break
    picked: list[_Picked] = []
    for ref, sha, found in known:
        best = found[0]
        if chosen is not None:
            best = next(
                (m for m in found if _covers(chosen, m) and m.statement is chosen),
                next(m for m in found if _covers(chosen, m)),
            )
        picked.append((ref, sha, best))
    if known and chosen is None:
        work.problems.append(_mixed(work.graph.source, list(pool.values()), picked))
    model = work.graph.model
    if chosen is not None and model is not None and chosen.release.model != model:
        from .trust import channel_label  # lazy: keeps the workflows hook free of crypto

        work.problems.append(
            InterfaceMismatchError(
                work.graph.source,
                f"the graph runs {model}, but its files are {chosen.release.model} "
                f"{chosen.release.version} ({channel_label(chosen.channel, long=True)}): "
                f"a release of another model never satisfies a {model} graph",
            )
        )
    return chosen, picked


def _mixed(source: str, pool: list[VerifiedStatement], picked: list[_Picked]) -> MixedReleaseError:
    """The mixed-release verdict, naming the release whose file must change.

    Within one model the newest release is the one to keep. Across models
    (Sonic's release beside a separate SVD release) versions do not compare:
    the release to change is that of the model most of the graph's components
    come from, which must declare the others in its ``compatible_with``.
    """
    counts: dict[str, int] = {}
    for _, _, m in picked:
        counts[m.model] = counts.get(m.model, 0) + 1
    main_model = max(counts, key=lambda name: (counts[name], name))
    own = [s for s in pool if s.release.model == main_model]
    head = max(own, key=_release_order).release
    others = sorted(
        {f"{s.release.model} {s.release.version}" for s in pool} - {f"{head.model} {head.version}"}
    )
    parts = sorted({_part(ref, m) for ref, _, m in picked})
    fix = (
        f"replace the files of {' and '.join(others)} with {head.model} {head.version} files"
        if all(s.release.model == main_model for s in pool)
        else f"change {head.model} {head.version}'s release.toml: declare "
        f"{' and '.join(others)} in its compatible_with, then sign it again"
    )
    return MixedReleaseError(
        source,
        ", ".join(parts) + ": releases must not be mixed "
        f"({head.model} {head.version} does not declare {' or '.join(others)} compatible; "
        f"{fix})",
    )


def check_slots(work: _Work, picked: list[_Picked]) -> None:
    """Step 4: each component on a slot of its role and interface (and edges, if typed)."""
    graph = work.graph
    known_roles = {r.expected_role for r in graph.weights if r.expected_role}
    comp_of_node: dict[str, Match] = {}
    for ref, _, m in picked:
        comp_of_node.setdefault(ref.node, m)
        if (
            ref.expected_role
            and m.role != ref.expected_role
            and (graph.strict_roles or m.role is None or m.role in known_roles)
        ):
            what = f"the {m.role} component" if m.role else "a non-component file"
            work.problems.append(
                InterfaceMismatchError(
                    graph.source,
                    f"{ref.describe()}: loads {what} of {m.describe()}, "
                    f"expected the {ref.expected_role} component",
                )
            )
        if ref.interface and m.interface != ref.interface:
            work.problems.append(
                InterfaceMismatchError(
                    graph.source,
                    f"{ref.describe()}: needs interface {ref.interface!r}, "
                    f"{m.role} of {m.describe()} has {m.interface!r}",
                )
            )
    if graph.typed_edges:
        work.problems += _check_edges(graph, comp_of_node)


def _resolution(
    work: _Work,
    chosen: VerifiedStatement | None,
    picked: list[_Picked],
    unknown: list[tuple[WeightRef, str | None]],
) -> Resolution:
    rows: list[tuple[WeightRef, str | None, Match | None]] = [
        *picked,
        *((r, s, None) for r, s in unknown),
    ]
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
        for ref, sha, m in rows
    )
    channel = max(
        (c.channel for c in components),
        key=lambda c: _CHANNEL_RANK.get(c, 4),
        default=chosen.channel if chosen else "unverified",
    )
    return Resolution(
        graph=work.graph,
        release=chosen,
        channel=channel,
        components=components,
        params=work.graph.params,
        warnings=tuple(work.warnings),
        unknown_nodes=work.graph.unknown_nodes,
        problems=tuple(_usage_first(work.problems)),
        located=MappingProxyType(dict(work.located)),
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


def check_runtime(
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
    models_dir: str | Path | ModelFolders | None = None,
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
