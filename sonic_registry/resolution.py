"""What a graph resolved to: one row per weight a node loads, the release, every problem.

The result type of :func:`sonic_registry.resolver.analyze_graph`, kept apart so
callers (the ComfyUI pack, the runtime) can type against it without the resolver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .errors import SonicRegistryError, raise_all

if TYPE_CHECKING:
    from pathlib import Path

    from .bundle import VerifiedStatement
    from .workflows import Graph

__all__ = ["Resolution", "ResolvedComponent"]


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
    #: Each graph path (``sonic/unet.pth``) and the file read for it: under the
    #: models folder, or the extra folder ComfyUI would load it from.
    located: Mapping[str, Path] = field(default_factory=lambda: MappingProxyType({}))

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
