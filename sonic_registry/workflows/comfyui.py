"""ComfyUI workflows (UI and API formats) -> :class:`~.graph.Graph`.

Two formats reach us:

* the **UI format** the editor saves: ``nodes`` (each with ``inputs``,
  ``outputs`` and positional ``widgets_values``) and ``links`` as
  ``[link_id, origin_node, origin_slot, target_node, target_slot, TYPE]``;
* the **API prompt format** sent to ``/prompt``: ``{node_id: {"class_type",
  "inputs": {name: value | [source_id, output_slot]}}}``.

Which files a node loads, and under which ``models/`` sub-folder, is knowledge
about node types (:data:`.comfyui_nodes.NODE_SPECS`, learnt from ComfyUI core and the
ComfyUI_Sonic node pack). That table is also what tells an old ComfyUI_Sonic
node interface from the current one: the current ``SONIC_PreData`` needs a
``weight_dtype`` input and its 2nd widget is ``duration`` in seconds, whereas
the February 2025 node had no such input and read ``frame_num`` there, so
loading that workflow in a current ComfyUI silently asks for 100 seconds.
Node types not in the table are reported, never crashed on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .comfyui_nodes import (
    NODE_SPECS,
    PARAM_TYPES,
    SONIC_TYPES,
    SVD_LOADERS,
    FileSlot,
    NodeSpec,
    name_widget_values,
)
from .graph import Graph, InvalidGraph, Link, Node, WeightRef, check_structure, connected_to

__all__ = ["NODE_SPECS", "FileSlot", "NodeSpec", "is_api_format", "is_ui_format", "parse_workflow"]

#: The model of the releases ComfyUI_Sonic nodes load.
_MODEL = "sonic"


def is_ui_format(doc: Any) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("nodes"), list) and "links" in doc


def _api_body(doc: Any) -> Mapping[str, Any] | None:
    if not isinstance(doc, dict) or not doc:
        return None
    if isinstance(doc.get("prompt"), dict) and "class_type" not in doc["prompt"]:
        doc = doc["prompt"]  # the body POSTed to /prompt wraps the graph
    if all(isinstance(v, dict) and "class_type" in v for v in doc.values()):
        body: Mapping[str, Any] = doc
        return body
    return None


def is_api_format(doc: Any) -> bool:
    return _api_body(doc) is not None


def parse_workflow(doc: Any, *, source: str) -> Graph:
    """Turn a parsed ComfyUI workflow (either format) into a checked :class:`Graph`."""
    if is_ui_format(doc):
        nodes, links, raw_widgets = _parse_ui(doc, source)
        _refuse_hidden_loaders(doc, nodes, source)
        fmt = "comfyui-ui"
    else:
        body = _api_body(doc)
        if body is None:
            raise InvalidGraph(
                "",
                "expected a ComfyUI workflow: UI format ({nodes, links}) or API format "
                "({id: {class_type, inputs}})",
                path=source,
            )
        nodes, links = _parse_api(body, source)
        raw_widgets = {}
        fmt = "comfyui-api"
    check_structure(source, nodes, links)
    return _Interpreter(source, fmt, nodes, links, raw_widgets).graph()


# --- UI format ---------------------------------------------------------------


def _refuse_hidden_loaders(doc: Mapping[str, Any], nodes: Mapping[str, Node], source: str) -> None:
    """Refuse subgraph instances that hide weight loaders: we do not expand subgraphs.

    Newer frontends save reusable subgraphs under ``definitions.subgraphs``
    and place instances whose node type is the subgraph's id. A loader inside
    one would otherwise go unchecked, so such a workflow is refused with a
    clear message instead of passing silently. Subgraphs without loaders are
    reported as unknown node types like any other.
    """
    definitions = doc.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    if not isinstance(subgraphs, list):
        return
    by_id = {
        sg["id"]: sg for sg in subgraphs if isinstance(sg, dict) and isinstance(sg.get("id"), str)
    }
    for node in nodes.values():
        sg = by_id.get(node.type)
        if sg is None:
            continue
        inner = sg.get("nodes")
        hidden = sorted(
            {
                kind
                for n in (inner if isinstance(inner, list) else [])
                if isinstance(n, dict)
                and isinstance(kind := n.get("type"), str)
                and (kind in by_id or _loads_files(kind))
            },
            key=str,
        )
        if hidden:
            raise InvalidGraph(
                "definitions.subgraphs",
                f"node {node.id} is an instance of subgraph {sg.get('name', node.type)!r}, "
                f"which contains {', '.join(map(str, hidden))}: subgraphs are not expanded, "
                "so their files cannot be checked; convert the subgraph back to nodes in "
                "the editor, or resolve the exported API prompt (always flat)",
                path=source,
            )


def _loads_files(kind: Any) -> bool:
    spec = NODE_SPECS.get(kind) if isinstance(kind, str) else None
    return spec is not None and (bool(spec.files) or spec.sonic)


def _node_id(value: Any, where: str, source: str) -> str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidGraph(
            where, f"expected a node id (integer or string), found {value!r}", path=source
        )
    return str(value)


def _ui_links(doc: Mapping[str, Any], source: str) -> dict[int, Link]:
    raw = doc.get("links")
    if not isinstance(raw, list):
        raise InvalidGraph("links", "expected a list", path=source)
    out: dict[int, Link] = {}
    for i, entry in enumerate(raw):
        where = f"links.{i}"
        if isinstance(entry, dict):  # newer frontends may save links as objects
            fields = [
                entry.get(k)
                for k in ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
            ]
        elif isinstance(entry, list) and len(entry) >= 5:
            fields = [*entry[:6], *([""] * (6 - len(entry)))]
        else:
            raise InvalidGraph(
                where,
                f"expected [id, origin, origin_slot, target, target_slot, type], found {entry!r}"[
                    :200
                ],
                path=source,
            )
        link_id, src, src_slot, dst, dst_slot, kind = fields
        for name, v in (("id", link_id), ("origin_slot", src_slot), ("target_slot", dst_slot)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise InvalidGraph(
                    f"{where}.{name}", f"expected an integer, found {v!r}", path=source
                )
        assert isinstance(link_id, int) and isinstance(src_slot, int)
        assert isinstance(dst_slot, int)
        if link_id in out:
            raise InvalidGraph(where, f"duplicate link id {link_id}", path=source)
        out[link_id] = Link(
            _node_id(src, f"{where}.origin", source),
            src_slot,
            _node_id(dst, f"{where}.target", source),
            dst_slot,
            kind if isinstance(kind, str) else "",
        )
    return out


def _parse_ui(
    doc: Mapping[str, Any], source: str
) -> tuple[dict[str, Node], tuple[Link, ...], dict[str, Any]]:
    links_by_id = _ui_links(doc, source)
    nodes: dict[str, Node] = {}
    raw_widgets: dict[str, Any] = {}
    input_names: dict[str, list[str]] = {}
    for i, raw in enumerate(doc["nodes"]):
        where = f"nodes.{i}"
        if not isinstance(raw, dict):
            raise InvalidGraph(where, "expected an object", path=source)
        node_id = _node_id(raw.get("id"), f"{where}.id", source)
        kind = raw.get("type")
        if not isinstance(kind, str) or not kind:
            raise InvalidGraph(
                f"{where}.type", f"expected a node type name, found {kind!r}", path=source
            )
        if node_id in nodes:
            raise InvalidGraph(f"{where}.id", f"duplicate node id {node_id}", path=source)
        inputs = raw.get("inputs") or []
        outputs = raw.get("outputs")
        if not isinstance(inputs, list) or not all(isinstance(x, dict) for x in inputs):
            raise InvalidGraph(f"{where}.inputs", "expected a list of objects", path=source)
        names = [str(x.get("name", "")) for x in inputs]
        linked: dict[str, tuple[str, int | str]] = {}
        for slot, entry in enumerate(inputs):
            link_id = entry.get("link")
            if link_id is None:
                continue
            link = links_by_id.get(link_id) if isinstance(link_id, int) else None
            if link is None:
                raise InvalidGraph(
                    f"{where}.inputs.{slot}",
                    f"node {node_id} ({kind}) input {names[slot]!r} refers to link "
                    f"{link_id!r}, which is not in links (dangling link)",
                    path=source,
                )
            linked[names[slot]] = (link.src, link.src_slot)
        out_types: tuple[str, ...] | None = None
        if isinstance(outputs, list):
            out_types = tuple(
                str(o.get("type", "")) if isinstance(o, dict) else "" for o in outputs
            )
        mode = raw.get("mode", 0)
        nodes[node_id] = Node(
            id=node_id,
            type=kind,
            linked=MappingProxyType(linked),
            outputs=out_types,
            active=mode not in (2, 4),
        )
        raw_widgets[node_id] = raw.get("widgets_values")
        input_names[node_id] = names
    links = tuple(links_by_id.values())
    # A link must land on an input slot that exists on its target node.
    for link in links:
        dst_names = input_names.get(link.dst)
        if (
            dst_names is not None
            and isinstance(link.dst_slot, int)
            and not (0 <= link.dst_slot < len(dst_names))
        ):
            raise InvalidGraph(
                "links",
                f"link {link.src}:{link.src_slot} -> {link.dst}:{link.dst_slot}: node "
                f"{link.dst} has {len(dst_names)} inputs, no input slot {link.dst_slot} "
                "(dangling link)",
                path=source,
            )
    return nodes, links, raw_widgets


# --- API format --------------------------------------------------------------


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and not isinstance(value[0], bool)
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def _parse_api(body: Mapping[str, Any], source: str) -> tuple[dict[str, Node], tuple[Link, ...]]:
    nodes: dict[str, Node] = {}
    links: list[Link] = []
    for node_id, raw in body.items():
        kind = raw.get("class_type")
        if not isinstance(kind, str) or not kind:
            raise InvalidGraph(
                f"{node_id}.class_type", f"expected a node type name, found {kind!r}", path=source
            )
        inputs = raw.get("inputs", {})
        if not isinstance(inputs, dict):
            raise InvalidGraph(f"{node_id}.inputs", "expected an object", path=source)
        values: dict[str, Any] = {}
        linked: dict[str, tuple[str, int | str]] = {}
        for name, value in inputs.items():
            if _is_link(value):
                src = str(value[0])
                linked[name] = (src, value[1])
                links.append(Link(src, value[1], node_id, name))
            else:
                values[name] = value
        spec = NODE_SPECS.get(kind)
        nodes[node_id] = Node(
            id=node_id,
            type=kind,
            values=MappingProxyType(values),
            linked=MappingProxyType(linked),
            outputs=spec.outputs if spec else None,
        )
    return nodes, tuple(links)


# --- interpretation: files, parameters, interface versions ------------------


class _Interpreter:
    """Reads each known node against its current interface; collects findings."""

    def __init__(
        self,
        source: str,
        fmt: str,
        nodes: dict[str, Node],
        links: tuple[Link, ...],
        raw_widgets: Mapping[str, Any],
    ) -> None:
        self.source = source
        self.fmt = fmt
        self.nodes = nodes
        self.links = links
        self.raw_widgets = raw_widgets
        self.weights: list[WeightRef] = []
        self.params: dict[str, int | float] = {}
        self.param_origin: dict[str, str] = {}
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.unknown: list[str] = []
        self.interframe: bool | None = None

    def graph(self) -> Graph:
        # Name UI widgets first, so every later step sees ``values`` by name.
        if self.fmt == "comfyui-ui":
            for node_id, node in list(self.nodes.items()):
                self.nodes[node_id] = self._name_widgets(node, self.raw_widgets.get(node_id))
        sonic = [
            n.id for n in self.nodes.values() if n.type in NODE_SPECS and NODE_SPECS[n.type].sonic
        ]
        pipeline = connected_to(sonic, self.nodes, self.links) if sonic else frozenset(self.nodes)
        if not sonic:
            self.warnings.append("no ComfyUI_Sonic node in this workflow")
        for node in self.nodes.values():
            spec = NODE_SPECS.get(node.type)
            if spec is None:
                self.unknown.append(node.describe())
                continue
            if not node.active:
                self.warnings.append(f"{node.describe()}: muted or bypassed, not checked")
                continue
            if node.id not in pipeline:
                for slot in spec.files:
                    if slot.widget and isinstance(node.values.get(slot.widget), str):
                        self.warnings.append(
                            f"{node.describe()}: loads {node.values[slot.widget]!r} outside "
                            "the Sonic pipeline (not connected to it); not checked"
                        )
                continue
            self._check_interface(node, spec)
            self._collect_files(node, spec)
            if spec.sonic:
                self._collect_params(node)
                if isinstance(node.values.get("use_interframe"), bool):
                    self.interframe = node.values["use_interframe"]
        return Graph(
            source=self.source,
            format=self.fmt,
            nodes=MappingProxyType(dict(self.nodes)),
            links=self.links,
            weights=tuple(self.weights),
            params=MappingProxyType(dict(self.params)),
            interface_errors=tuple(self.errors),
            warnings=tuple(self.warnings),
            unknown_nodes=tuple(self.unknown),
            model=_MODEL if any(n.type in SONIC_TYPES for n in self.nodes.values()) else None,
            interframe=self.interframe,
        )

    # -- UI widgets -> named values ------------------------------------------

    def _name_widgets(self, node: Node, raw: Any) -> Node:
        if isinstance(raw, dict):  # some custom nodes save widgets by name
            values = dict(raw)
        elif isinstance(raw, list):
            values, position = name_widget_values(self._widget_names(node, raw), raw)
            for extra in range(position, len(raw)):
                values[f"widget_{extra}"] = raw[extra]
        else:
            values = {}
        return Node(
            node.id, node.type, MappingProxyType(values), node.linked, node.outputs, node.active
        )

    def _widget_names(self, node: Node, raw: list[Any]) -> tuple[str, ...]:
        spec = NODE_SPECS.get(node.type)
        if spec is None:
            return tuple(f"widget_{i}" for i in range(len(raw)))
        if node.type == "SONICTLoader" and _looks_like_svd_repo(raw):
            return ("svd_repo", *spec.widgets)
        if node.type == "SONIC_PreData" and "weight_dtype" not in node.linked:
            if len(raw) == 3:
                return ("min_resolution", "frame_num", "expand_ratio")
            return ("min_resolution",)
        return spec.widgets

    # -- interface versions --------------------------------------------------

    def _check_interface(self, node: Node, spec: NodeSpec) -> None:
        where = node.describe()
        if node.type == "SONICTLoader" and "svd_repo" in node.values:
            self.errors.append(
                f"{where}: old ComfyUI_Sonic interface (before 2025-02-11): takes an svd_repo "
                f"path widget {node.values['svd_repo']!r} and no MODEL input; the current "
                "node takes the MODEL output of ImageOnlyCheckpointLoader (SVD img2vid-xt)"
            )
            return
        if node.type == "SONIC_PreData" and "frame_num" in node.values:
            self.errors.append(
                f"{where}: old ComfyUI_Sonic interface (before 2025-02-16): no weight_dtype "
                f"input, and its 2nd widget is frame_num={node.values['frame_num']!r} frames, "
                f"which the current node reads as duration={node.values['frame_num']!r} seconds"
            )
            return
        for name in spec.inputs:
            if name not in node.linked:
                self.errors.append(
                    f"{where}: required input {name!r} is not connected (the current node "
                    f"fails with 'Required input is missing: {name}')"
                )
        if self.fmt == "comfyui-ui" and spec.widgets:
            extra = [k for k in node.values if k.startswith("widget_")]
            got = len(node.values)
            if extra or got < len(spec.widgets):
                self.errors.append(
                    f"{where}: {got} widget values, the current node has {len(spec.widgets)} "
                    f"({', '.join(spec.widgets)}): saved by another version of the node"
                )
        if self.fmt == "comfyui-api" and spec.widgets:
            known = set(spec.inputs) | set(spec.widgets)
            for name in node.values:
                if name not in known:
                    self.warnings.append(
                        f"{where}: {name!r} is not an input of the current {node.type}; "
                        "ComfyUI ignores it"
                    )
            for name in spec.widgets:
                if name not in node.values and name not in node.linked:
                    self.errors.append(f"{where}: required input {name!r} is missing")
        if (
            spec.outputs is not None
            and node.outputs is not None
            and self.fmt == "comfyui-ui"
            and tuple(node.outputs[: len(spec.outputs)]) != spec.outputs
        ):
            self.errors.append(
                f"{where}: outputs ({', '.join(node.outputs)}) differ from the current "
                f"node's ({', '.join(spec.outputs)}): saved by another version of the node"
            )
        if node.type == "SONICTLoader" and "model" in node.linked:
            self._check_base_model(node)

    def _check_base_model(self, node: Node) -> None:
        """SONICTLoader converts an SVD img2vid-xt UNet: any other family is wrong."""
        src = self._source_of(node.linked["model"][0])
        if src is None or src.type in SVD_LOADERS:
            return
        if src.type in NODE_SPECS:
            loaded = next(
                (
                    src.values[s.widget]
                    for s in NODE_SPECS[src.type].files
                    if s.widget and s.widget in src.values
                ),
                None,
            )
            self.errors.append(
                f"{node.describe()}: input 'model' comes from {src.describe()}"
                + (f" loading {loaded!r}" if loaded is not None else "")
                + ", expected an SVD img2vid-xt checkpoint from ImageOnlyCheckpointLoader "
                "(wrong model family)"
            )
        else:
            self.warnings.append(
                f"{node.describe()}: input 'model' comes from unknown {src.describe()}; "
                "cannot tell whether it is an SVD img2vid-xt checkpoint"
            )

    def _source_of(self, node_id: str) -> Node | None:
        seen: set[str] = set()
        node = self.nodes.get(node_id)
        while node is not None and node.id not in seen:
            seen.add(node.id)
            spec = NODE_SPECS.get(node.type)
            if not (spec and spec.passthrough and node.linked):
                return node
            node = self.nodes.get(next(iter(node.linked.values()))[0])
        return node

    # -- files and parameters ----------------------------------------------------

    def _collect_files(self, node: Node, spec: NodeSpec) -> None:
        for slot in spec.files:
            if slot.widget:
                if slot.widget in node.linked:
                    self.warnings.append(
                        f"{node.describe()}: {slot.widget} comes from a link; the file it "
                        "names cannot be checked"
                    )
                    continue
                name = node.values.get(slot.widget)
                if name is None:
                    continue
                if not isinstance(name, str) or not name:
                    self.errors.append(
                        f"{node.describe()}: {slot.widget} should name a file, found {name!r}"
                    )
                    continue
                if name == "none":
                    self.warnings.append(f"{node.describe()}: {slot.widget} is 'none'")
                    continue
                rel = name.replace("\\", "/")
            else:
                rel = slot.name
            if (
                node.type == "SONICTLoader"
                and slot.name
                and node.values.get("use_interframe") is False
            ):
                continue  # RIFE is loaded only for frame interpolation
            self.weights.append(
                WeightRef(
                    node=node.id,
                    node_type=node.type,
                    slot=slot.widget or "(implicit)",
                    path=f"{slot.folder}/{rel}",
                    expected_role=slot.role,
                    optional=slot.optional,
                    folder=slot.folder if slot.widget else "",
                )
            )

    def _collect_params(self, node: Node) -> None:
        for name, kind in PARAM_TYPES.items():
            if name not in node.values or name in node.linked:
                continue
            value = node.values[name]
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or (isinstance(value, float) and not math.isfinite(value))
            ):
                self.errors.append(f"{node.describe()}: {name} should be a number, found {value!r}")
                continue
            number: int | float = int(value) if kind is int and value == int(value) else value
            if name in self.params and self.params[name] != number:
                self.warnings.append(
                    f"{node.describe()}: {name}={number} differs from {name}="
                    f"{self.params[name]} set by node {self.param_origin[name]}; "
                    "the first is reported"
                )
                continue
            self.params.setdefault(name, number)
            self.param_origin.setdefault(name, node.id)


def _looks_like_svd_repo(raw: list[Any]) -> bool:
    """The oldest SONICTLoader saved a directory path before the UNet file name."""
    return len(raw) == 5 and isinstance(raw[0], str) and isinstance(raw[1], str)
