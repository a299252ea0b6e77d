"""``pipeline.toml``: a pipeline graph written by hand -> :class:`~.graph.Graph`.

::

    [pipeline]
    name = "sonic-portrait"               # optional

    [params]                              # optional: reported for check-params
    inference_steps = 25
    dynamic_scale = 1.0

    [nodes.audio_encoder]
    file = "sonic/audio2token.safetensors"   # relative to --models-dir, identified by digest
    role = "audio_encoder"                   # optional: the role this node needs
    interface = "audio_tokens/v2"            # optional: the slot type this node needs

    [nodes.motion_decoder]                # or name the component instead of a file
    component = { model = "sonic", version = "1.3.0", role = "motion_decoder" }

    [nodes.sampler]                       # a node that loads nothing
    type = "sampler"

    [[edges]]
    from = "audio_encoder"                # "node" or "node.slot"
    to = "motion_decoder"
    interface = "audio_tokens/v2"         # optional

An edge between two components means one produces what the other consumes,
so their signed interfaces must be equal (or equal to the edge's own).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ..canonical import finite_float
from .graph import Graph, InvalidGraph, Link, Node, WeightRef, check_structure

__all__ = ["parse_pipeline", "parse_pipeline_text"]

_NODE_KEYS = frozenset({"file", "component", "role", "interface", "type"})


def parse_pipeline_text(text: str, *, source: str) -> Graph:
    try:
        doc = tomllib.loads(text, parse_float=finite_float)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidGraph("", f"not valid TOML: {exc}", path=source) from exc
    except ValueError as exc:  # finite_float: 1e400, inf, nan
        raise InvalidGraph("", str(exc), path=source) from exc
    except RecursionError as exc:
        raise InvalidGraph("", "TOML nested too deeply", path=source) from exc
    return parse_pipeline(doc, source=source)


def _str(table: Mapping[str, Any], key: str, where: str, source: str) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise InvalidGraph(f"{where}.{key}", f"expected a string, found {value!r}", path=source)
    return value


def _endpoint(value: Any, where: str, source: str) -> tuple[str, str]:
    if not isinstance(value, str) or not value:
        raise InvalidGraph(where, f"expected 'node' or 'node.slot', found {value!r}", path=source)
    node, _, slot = value.partition(".")
    return node, slot


def _role_names() -> frozenset[str]:
    """Role names a node may be named after: Sonic's, as the built-in catalog lists them."""
    from ..catalog import load_catalog

    return frozenset(f.role for f in load_catalog().files())


def parse_pipeline(doc: Mapping[str, Any], *, source: str) -> Graph:
    """Check and convert a parsed ``pipeline.toml`` document."""
    unknown = set(doc) - {"pipeline", "params", "nodes", "edges"}
    if unknown:
        raise InvalidGraph(
            sorted(unknown)[0],
            "unknown table (expected pipeline, params, nodes, edges)",
            path=source,
        )
    raw_nodes = doc.get("nodes")
    if not isinstance(raw_nodes, dict) or not raw_nodes:
        raise InvalidGraph("nodes", "expected at least one [nodes.<name>] table", path=source)
    nodes: dict[str, Node] = {}
    weights: list[WeightRef] = []
    for name, table in raw_nodes.items():
        where = f"nodes.{name}"
        if not isinstance(table, dict):
            raise InvalidGraph(where, "expected a table", path=source)
        extra = set(table) - _NODE_KEYS
        if extra:
            raise InvalidGraph(
                f"{where}.{sorted(extra)[0]}",
                f"unknown key (expected one of {', '.join(sorted(_NODE_KEYS))})",
                path=source,
            )
        file = _str(table, "file", where, source)
        role = _str(table, "role", where, source)
        interface = _str(table, "interface", where, source)
        kind = _str(table, "type", where, source) or "component"
        component: tuple[str, str, str] | None = None
        if "component" in table:
            spec = table["component"]
            if not isinstance(spec, dict) or not all(
                isinstance(spec.get(k), str) and spec.get(k) for k in ("model", "version", "role")
            ):
                raise InvalidGraph(
                    f"{where}.component",
                    "expected { model = ..., version = ..., role = ... }",
                    path=source,
                )
            component = (spec["model"], spec["version"], spec["role"])
            role = role or spec["role"]
        # A node named after a role binds that role even with ``role =`` left out,
        # so swapping two components' files between their nodes is refused.
        role = role or (name if name in _role_names() else "")
        nodes[name] = Node(id=name, type=kind, values=MappingProxyType(dict(table)))
        if file or component:
            weights.append(
                WeightRef(
                    node=name,
                    node_type=kind,
                    slot="file" if file else "component",
                    path=file.replace("\\", "/") or None,
                    component=component,
                    expected_role=role,
                    interface=interface,
                )
            )
    links: list[Link] = []
    raw_edges = doc.get("edges", [])
    if not isinstance(raw_edges, list):
        raise InvalidGraph("edges", "expected an array of [[edges]] tables", path=source)
    for i, edge in enumerate(raw_edges):
        where = f"edges.{i}"
        if not isinstance(edge, dict):
            raise InvalidGraph(where, "expected a table", path=source)
        src, src_slot = _endpoint(edge.get("from"), f"{where}.from", source)
        dst, dst_slot = _endpoint(edge.get("to"), f"{where}.to", source)
        links.append(Link(src, src_slot, dst, dst_slot, _str(edge, "interface", where, source)))
    params: dict[str, int | float] = {}
    raw_params = doc.get("params", {})
    if not isinstance(raw_params, dict):
        raise InvalidGraph("params", "expected a table", path=source)
    for name, value in raw_params.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidGraph(f"params.{name}", f"expected a number, found {value!r}", path=source)
        params[name] = value
    check_structure(source, nodes, links)
    return Graph(
        source=source,
        format="pipeline.toml",
        nodes=MappingProxyType(nodes),
        links=tuple(links),
        weights=tuple(weights),
        params=MappingProxyType(params),
        strict_roles=True,
        typed_edges=True,
    )
