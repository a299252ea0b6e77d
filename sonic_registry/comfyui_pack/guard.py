"""The guard: judge a queued ComfyUI prompt before it runs.

:func:`guard_prompt` resolves the API prompt like ``sonic-registry resolve``
does (the files widgets name and the helper files ComfyUI_Sonic loads from
fixed paths under ``models/sonic/``, each identified by digest), then turns
every problem into a :class:`Finding` of one *kind* whose action (refuse, warn
or ignore) the policy decides. Refusals become ComfyUI ``node_errors`` keyed by
the loader nodes concerned (:func:`node_errors`), so the editor outlines them.

Nothing here imports ComfyUI: the glue (:mod:`.glue`) calls these functions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import (
    MixedReleaseError,
    SonicRegistryError,
    UnreadableInputError,
    UnsafePathError,
)
from ..workflows import InterfaceMismatchError
from ..workflows.comfyui import NODE_SPECS, parse_workflow
from .config import Action
from .context import PackContext, status_rank
from .messages import Text, pick, text

if TYPE_CHECKING:
    from ..audio import AudioInfo
    from ..resolver import Resolution, ResolvedComponent
    from ..workflows import Graph

__all__ = [
    "SONIC_NODE_TYPES",
    "Finding",
    "Verdict",
    "guard_prompt",
    "is_sonic_prompt",
    "node_errors",
    "refusal",
]

#: ComfyUI_Sonic's node types: a prompt with none of them is not guarded.
SONIC_NODE_TYPES = frozenset(name for name, spec in NODE_SPECS.items() if spec.sonic)
_NODE_IN_TEXT = re.compile(r"\bnode (\S+) \(")
#: Audio loaders whose ``audio`` widget names a file in ComfyUI's input folder.
_AUDIO_LOADERS = frozenset({"LoadAudio", "VHS_LoadAudioUpload"})


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing the guard found, what the policy does about it, and where."""

    kind: str
    action: Action
    nodes: tuple[str, ...]
    message: Text
    file: str | None = None
    sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "action": self.action,
            "nodes": list(self.nodes),
            "en": self.message[0],
            "zh": self.message[1],
            "file": self.file,
            "sha256": self.sha256,
        }


@dataclass(frozen=True)
class Verdict:
    """The guard's answer for one prompt."""

    findings: tuple[Finding, ...]
    resolution: Resolution | None = None
    statuses: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    audio: AudioInfo | None = None

    @property
    def refused(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.action == "refuse")

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.action == "warn")

    @property
    def ok(self) -> bool:
        return not self.refused

    def to_dict(self) -> dict[str, Any]:
        res = self.resolution
        return {
            "ok": self.ok,
            "release": res.release.to_dict() if res is not None and res.release else None,
            "components": [c.to_dict() for c in res.components] if res is not None else [],
            "params": dict(res.params) if res is not None else {},
            "statuses": dict(self.statuses),
            "refused": [f.to_dict() for f in self.refused],
            "warnings": [f.to_dict() for f in self.warnings],
        }


def is_sonic_prompt(prompt: Any) -> bool:
    """Whether an API prompt uses a ComfyUI_Sonic node (cheap: no parsing)."""
    return isinstance(prompt, Mapping) and any(
        isinstance(node, Mapping) and node.get("class_type") in SONIC_NODE_TYPES
        for node in prompt.values()
    )


def _finding(
    ctx: PackContext, kind: str, nodes: tuple[str, ...], message: Text, **where: str | None
) -> Finding:
    return Finding(kind, ctx.config.action(kind), nodes, message, **where)


def _nodes_in(detail: str, fallback: tuple[str, ...]) -> tuple[str, ...]:
    found = tuple(dict.fromkeys(_NODE_IN_TEXT.findall(detail)))
    return found or fallback


def _problem_findings(ctx: PackContext, res: Resolution, sonic: tuple[str, ...]) -> list[Finding]:
    """The resolver's refusals: mixed releases, interfaces, missing or unsafe files."""
    out: list[Finding] = []
    for p in res.problems:
        if isinstance(p, MixedReleaseError):
            nodes = tuple(dict.fromkeys(c.node for c in res.components if c.release_id))
            out.append(_finding(ctx, "mixed", nodes or sonic, text("mixed", detail=p.detail)))
            continue
        kind = (
            "interface"
            if isinstance(p, InterfaceMismatchError)
            else "unsafe"
            if isinstance(p, UnsafePathError)
            else "missing"
            if isinstance(p, UnreadableInputError)
            else "interface"
        )
        line = str(p)
        out.append(_finding(ctx, kind, _nodes_in(line, sonic), text(kind, detail=line)))
    return out


def _component_finding(
    ctx: PackContext, res: Resolution, c: ResolvedComponent
) -> tuple[str, Finding | None]:
    """A badge status for one loaded file, and the finding it makes (if any)."""
    file = c.file or c.slot
    digest = c.sha256 or "?"
    if c.release_id is None:
        found = res.located.get(c.file) if c.file else None
        size = _size(found) if found is not None else None
        same = ctx.same_name_and_size(PurePosixPath(file).name, size) if size else []
        same = [k for k in same if k.sha256 != c.sha256]
        if same:
            # The likeliest original: a file of the guarded models, then of the graph's release.
            chosen = res.release.release.release_id if res.release is not None else None
            k = min(same, key=lambda k: (k.model not in ctx.config.models, k.release_id != chosen))
            msg = text(
                "tampered", file=file, release=k.release_id, role=k.role or "file", digest=digest
            )
            return "tampered", _finding(ctx, "tampered", (c.node,), msg, file=file, sha256=c.sha256)
        msg = text("unknown", file=file, digest=digest)
        return "unknown", _finding(ctx, "unknown", (c.node,), msg, file=file, sha256=c.sha256)
    release = f"{c.model} {c.version}"
    if c.model not in ctx.config.models:
        msg = text(
            "other_model",
            file=file,
            role=c.role or "file",
            release=release,
            models=", ".join(ctx.config.models),
        )
        return "other_model", _finding(ctx, "other_model", (c.node,), msg, file=file)
    if c.channel in ("community", "published"):
        msg = text(c.channel, file=file, digest=digest, release=release, role=c.role or "file")
        return c.channel, _finding(ctx, c.channel, (c.node,), msg, file=file, sha256=c.sha256)
    return "official", None


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _param_findings(
    ctx: PackContext, res: Resolution, graph: Graph, audio: AudioInfo | None
) -> list[Finding]:
    """Parameters against the release's ranges, and duration against the audio.

    The judgement is :func:`~sonic_registry.params.check_graph_params`, the one
    ``resolve``, the workflows hook and ``check-params --workflow`` give; the guard
    adds only the measured audio, which it alone can find (ComfyUI's input folder).
    """
    from ..params import DURATION, check_graph_params

    if res.release is None:
        return []
    try:
        report = check_graph_params(res.release.release, graph, audio=audio)
    except SonicRegistryError as exc:
        return [_finding(ctx, "interface", _sonic_nodes(graph), text("interface", detail=str(exc)))]
    out = []
    for item in report.items:
        if item.status == "ok":
            continue
        if item.name == DURATION:
            kind = "duration"
        else:
            kind = "params" if item.status == "warning" else "params_outside_allowed"
        out.append(_finding(ctx, kind, _setter(graph, item.name), text(kind, detail=item.message)))
    return out


def _setter(graph: Graph, name: str) -> tuple[str, ...]:
    return tuple(
        n.id
        for n in graph.nodes.values()
        if n.type in SONIC_NODE_TYPES and name in n.values and n.active
    ) or _sonic_nodes(graph)


def _sonic_nodes(graph: Graph) -> tuple[str, ...]:
    return tuple(n.id for n in graph.nodes.values() if n.type in SONIC_NODE_TYPES)


def _audio_of(ctx: PackContext, graph: Graph) -> AudioInfo | None:
    """The audio file SONIC_PreData's ``audio`` input comes from, measured (or None)."""
    from ..audio import measure_audio

    if ctx.input_dir is None:
        return None
    for node in graph.nodes.values():
        if node.type != "SONIC_PreData" or "audio" not in node.linked:
            continue
        src = graph.nodes.get(node.linked["audio"][0])
        if src is None or src.type not in _AUDIO_LOADERS:
            continue
        # API prompts name the widget; UI workflows keep LoadAudio's value positional.
        name = src.values.get("audio", src.values.get("widget_0"))
        if not isinstance(name, str) or not name:
            continue
        pure = PurePosixPath(name.replace("\\", "/").removesuffix(" [input]"))
        if pure.is_absolute() or ".." in pure.parts:
            continue
        try:
            return measure_audio(ctx.input_dir / pure)
        except SonicRegistryError:
            return None
    return None


def guard_prompt(prompt: Mapping[str, Any], ctx: PackContext) -> Verdict:
    """Resolve and judge one API prompt; never raises for a verdict (see :class:`Verdict`).

    Raises only for an unexpected failure, which the glue turns into a refusal
    (fail closed).
    """
    from ..resolver import analyze_graph
    from ..workflows import InvalidGraph

    try:
        graph = parse_workflow(dict(prompt), source="prompt")
    except InvalidGraph as exc:
        nodes = tuple(str(k) for k, v in prompt.items() if v.get("class_type") in SONIC_NODE_TYPES)
        return Verdict((_finding(ctx, "interface", nodes, text("interface", detail=str(exc))),))
    res = analyze_graph(
        graph,
        ctx.releases,
        ctx.models,
        allow_unsigned=True,
        stat_cache=ctx.stat_cache,
        check_params=False,  # _param_findings judges them, with the measured audio
    )
    sonic = _sonic_nodes(graph)
    findings = _problem_findings(ctx, res, sonic)
    rank = status_rank()
    statuses: dict[str, str] = {}
    for c in res.components:
        status, finding = _component_finding(ctx, res, c)
        if finding is not None:
            findings.append(finding)
        if c.node not in statuses or rank[status] < rank[statuses[c.node]]:
            statuses[c.node] = status
    for f in findings:
        if f.kind in ("mixed", "missing"):
            for node in f.nodes:
                if node in statuses and rank[f.kind] < rank[statuses[node]]:
                    statuses[node] = f.kind
    audio = _audio_of(ctx, graph)  # decoded once: the duration check and the log record use it
    findings += _param_findings(ctx, res, graph, audio)
    kept = tuple(f for f in findings if f.action != "ignore")
    return Verdict(kept, res, MappingProxyType(statuses), audio)


def node_errors(
    verdict: Verdict,
    prompt: Mapping[str, Any],
    locale: str,
    outputs: list[str] | tuple[str, ...] = (),
) -> dict[str, Any]:
    """ComfyUI's ``node_errors`` for the refusals: ``{node_id: {errors, class_type, ...}}``."""
    out: dict[str, Any] = {}
    for f in verdict.refused:
        for node in f.nodes:
            raw = prompt.get(node)
            class_type = raw.get("class_type") if isinstance(raw, Mapping) else None
            entry = out.setdefault(
                node,
                {"errors": [], "dependent_outputs": list(outputs), "class_type": class_type},
            )
            entry["errors"].append(
                {
                    "type": f"sonic_registry_{f.kind}",
                    "message": pick(text("refused_title"), locale),
                    "details": pick(f.message, locale),
                    "extra_info": {"kind": f.kind, "file": f.file},
                }
            )
    return out


def refusal(lines: list[str], locale: str) -> dict[str, Any]:
    """The top-level ``error`` object of a refused ``POST /prompt``."""
    return {
        "type": "sonic_registry_refused",
        "message": pick(text("refused_title"), locale),
        "details": "\n".join(lines),
        "extra_info": {},
    }
