"""The pipeline graph every input format is turned into, and its structural checks.

A :class:`Graph` is what the resolver needs and nothing more: the nodes, the
links between their slots, the weight files each node loads
(:class:`WeightRef`), the parameters it could read, and what the format
adapter noticed on the way (old node interfaces, unknown node types). The
adapters (``comfyui``, ``pipeline``) know their formats; the resolver only
knows graphs. Structural problems (a link to a node that does not exist, a
cycle) are the graph author's fault and raise :class:`InvalidGraph`
(exit code 2): there is no verdict to give about a graph that cannot run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..errors import InterfaceMismatchError, InvalidGraph

__all__ = [
    "Graph",
    "InterfaceMismatchError",
    "InvalidGraph",
    "Link",
    "Node",
    "WeightRef",
    "check_structure",
    "connected_to",
]


@dataclass(frozen=True, slots=True)
class Link:
    """An edge from an output slot of one node to an input slot of another."""

    src: str
    src_slot: int | str
    dst: str
    dst_slot: int | str
    type: str = ""


@dataclass(frozen=True, slots=True)
class Node:
    """One node: its type, literal input values by name, and its linked inputs.

    ``values`` holds widget/literal values by input name (positional UI
    widgets already named, where the node type is known); ``linked`` maps an
    input name to the (source node, source slot) feeding it.
    """

    id: str
    type: str
    values: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    linked: Mapping[str, tuple[str, int | str]] = field(
        default_factory=lambda: MappingProxyType({})
    )
    outputs: tuple[str, ...] | None = None  # output slot types when the format lists them
    active: bool = True  # False for muted / bypassed ComfyUI nodes

    def describe(self) -> str:
        return f"node {self.id} ({self.type})"


@dataclass(frozen=True, slots=True)
class WeightRef:
    """A weight file (or a named component) that a node loads.

    ``path`` is relative to the models directory, POSIX style. ``component``
    names a release component explicitly as (model, version, role) instead of,
    or in addition to, a file. ``expected_role``/``interface`` are what the
    node needs there; empty means "any". ``optional`` files are checked only
    when they exist (a node loads them only in some configurations).
    ``folder`` is the ComfyUI folder name a loader looks the file up in
    (``folder_paths.get_full_path``: its every registered folder, extra ones
    too); ``""`` for a file loaded from a fixed path under the models directory.
    """

    node: str
    node_type: str
    slot: str
    path: str | None = None
    component: tuple[str, str, str] | None = None
    expected_role: str = ""
    interface: str = ""
    optional: bool = False
    folder: str = ""

    def describe(self) -> str:
        what = self.path or "@".join(self.component or ("?",))
        return f"node {self.node} ({self.node_type}) {self.slot} {what}"


@dataclass(frozen=True)
class Graph:
    """A pipeline graph in the one shape the resolver understands."""

    source: str
    format: str  # "pipeline.toml" | "comfyui-ui" | "comfyui-api"
    nodes: Mapping[str, Node]
    links: tuple[Link, ...]
    weights: tuple[WeightRef, ...] = ()
    params: Mapping[str, int | float] = field(default_factory=lambda: MappingProxyType({}))
    interface_errors: tuple[str, ...] = ()  # one line each; become InterfaceMismatchError
    warnings: tuple[str, ...] = ()
    unknown_nodes: tuple[str, ...] = ()  # "node 7 (Uncrop (mtb))"
    #: A slot's role binds whatever the file is (pipeline.toml says what each node
    #: is); ComfyUI slots only refuse a file of another *Sonic* role.
    strict_roles: bool = False
    #: Edges carry interfaces the resolver checks against both ends (pipeline.toml).
    typed_edges: bool = False
    #: The model whose release must satisfy the graph ("sonic" for ComfyUI_Sonic
    #: nodes): a release of another model never does, whoever signed it.
    model: str | None = None
    #: ComfyUI_Sonic's ``use_interframe`` (RIFE frame interpolation): it doubles the
    #: output frame rate, so the fps rule depends on it. None: the graph does not say.
    interframe: bool | None = None


def _fail(where: str, message: str) -> InvalidGraph:
    return InvalidGraph("", message, path=where)


def check_structure(source: str, nodes: Mapping[str, Node], links: Iterable[Link]) -> None:
    """Refuse graphs that cannot execute: links to missing nodes or slots, and cycles.

    Runs in O(nodes + links) and without recursion, so a 100,000-node chain
    is checked, not a RecursionError.
    """
    successors: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for link in links:
        # Step 1: both ends of every link exist (a "missing node").
        for end, role in ((link.src, "source"), (link.dst, "target")):
            if end not in nodes:
                raise _fail(
                    source,
                    f"link {link.src}:{link.src_slot} -> {link.dst}:{link.dst_slot}: "
                    f"{role} node {end} does not exist",
                )
        # Step 2: the source slot exists when the format lists the outputs (a "dangling" link).
        outputs = nodes[link.src].outputs
        if (
            outputs is not None
            and isinstance(link.src_slot, int)
            and not 0 <= link.src_slot < len(outputs)
        ):
            raise _fail(
                source,
                f"link {link.src}:{link.src_slot} -> {link.dst}:{link.dst_slot}: "
                f"{nodes[link.src].describe()} has {len(outputs)} outputs, "
                f"no output slot {link.src_slot}",
            )
        successors[link.src].append(link.dst)
    # Step 3: no cycles. Kahn's algorithm peels off nodes with no incoming
    # link; whatever is left sits on (or behind) a cycle, which we then name.
    indegree = dict.fromkeys(nodes, 0)
    for targets in successors.values():
        for dst in targets:
            indegree[dst] += 1
    ready = [n for n, d in indegree.items() if d == 0]
    done = 0
    while ready:
        node_id = ready.pop()
        done += 1
        for dst in successors[node_id]:
            indegree[dst] -= 1
            if indegree[dst] == 0:
                ready.append(dst)
    if done < len(nodes):
        raise _fail(source, f"cycle between nodes {' -> '.join(_find_cycle(successors, indegree))}")


def _find_cycle(successors: Mapping[str, list[str]], indegree: Mapping[str, int]) -> list[str]:
    """Name one cycle among the nodes Kahn's algorithm could not remove.

    Each such node still has a predecessor among them, so walking backwards
    from any of them must revisit a node: that loop is a cycle.
    """
    left = {n for n, d in indegree.items() if d > 0}
    predecessor: dict[str, str] = {}
    for src, targets in successors.items():
        if src in left:
            for dst in targets:
                if dst in left:
                    predecessor.setdefault(dst, src)
    node = next(n for n, d in indegree.items() if d > 0)  # graph order: deterministic
    seen: dict[str, int] = {}
    path: list[str] = []
    while node not in seen:
        seen[node] = len(path)
        path.append(node)
        node = predecessor[node]
    cycle = path[seen[node] :]
    cycle.reverse()
    return [*cycle, cycle[0]]


def connected_to(
    seeds: Iterable[str], nodes: Mapping[str, Node], links: Iterable[Link]
) -> frozenset[str]:
    """Node ids reachable from ``seeds`` when links are followed both ways."""
    neighbours: dict[str, list[str]] = {node_id: [] for node_id in nodes}
    for link in links:
        neighbours[link.src].append(link.dst)
        neighbours[link.dst].append(link.src)
    seen = set(seeds)
    todo = list(seen)
    while todo:
        for other in neighbours.get(todo.pop(), ()):
            if other not in seen:
                seen.add(other)
                todo.append(other)
    return frozenset(seen)
