"""Pipeline graphs from ``pipeline.toml`` and ComfyUI workflows.

:func:`load_graph` sniffs the format from the content, so a ComfyUI workflow
saved as ``.txt`` or a pipeline without the ``.toml`` suffix still parses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..canonical import MAX_DOCUMENT_BYTES, loads_strict
from ..errors import InvalidManifest
from ..fileio import read_bounded
from .comfyui import is_api_format, is_ui_format, parse_workflow
from .graph import (
    Graph,
    InterfaceMismatchError,
    InvalidGraph,
    Link,
    Node,
    WeightRef,
    check_structure,
)
from .pipeline import parse_pipeline_text

__all__ = [
    "Graph",
    "InterfaceMismatchError",
    "InvalidGraph",
    "Link",
    "Node",
    "WeightRef",
    "check_structure",
    "graph_format",
    "load_graph",
    "parse_graph_bytes",
]


def graph_format(doc: Any) -> str | None:
    """The one format sniffer (the parser and the workflows hook both use it).

    ``comfyui-ui``, ``comfyui-api`` or ``pipeline.toml`` for a parsed JSON or
    TOML document, None for anything else. Adding a format means adding it here
    and to :func:`parse_graph_bytes`.
    """
    if is_ui_format(doc):
        return "comfyui-ui"
    if is_api_format(doc):
        return "comfyui-api"
    if isinstance(doc, dict) and isinstance(doc.get("nodes"), dict):
        return "pipeline.toml"
    return None


def parse_graph_bytes(data: bytes, *, source: str) -> Graph:
    """Parse a graph document: JSON (a ComfyUI workflow) or TOML (``pipeline.toml``).

    A document starting with ``{``, or named ``*.json``, is JSON; ``*.toml``
    and anything else is TOML (a TOML table header also starts with ``[``).
    """
    if len(data) > MAX_DOCUMENT_BYTES:
        raise InvalidGraph("", f"larger than {MAX_DOCUMENT_BYTES} bytes", path=source)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidGraph("", f"not UTF-8 text: {exc.reason}", path=source) from exc
    suffix = Path(source).suffix.lower()
    if suffix != ".toml" and (suffix == ".json" or text.lstrip()[:1] == "{"):
        try:
            doc = loads_strict(text, where=source)
        except InvalidGraph:
            raise
        except InvalidManifest as exc:
            raise InvalidGraph(exc.field, exc.detail, path=source) from exc
        return parse_workflow(doc, source=source)
    return parse_pipeline_text(text, source=source)


def load_graph(path: str | Path) -> Graph:
    """Read a pipeline graph file, whatever its format (exit 2 on any structural error)."""
    p = Path(path)
    data = read_bounded(
        p, MAX_DOCUMENT_BYTES, kind="graph file (pipeline.toml or ComfyUI workflow)"
    )
    return parse_graph_bytes(data, source=str(p))
