"""Turn a ComfyUI UI-format workflow into the API prompt the editor would POST.

The editor names each node's ``widgets_values`` by the node's widget inputs
(in ``/object_info`` order), skipping the "control after generate" value after
a seed, and replaces inputs that are linked by ``[source_id, slot]``; muted
and bypassed nodes are left out. ``widget_names(node_type)`` gives the widget
input names: from a live server's ``/object_info`` in the end-to-end test,
from :data:`WIDGETS` otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sonic_registry.workflows.comfyui import NODE_SPECS

#: Widget inputs of the core nodes the real workflows use (ComfyUI 0.3.64 /object_info).
WIDGETS: Mapping[str, tuple[str, ...]] = {
    "LoadImage": ("image",),
    "LoadAudio": ("audio",),
    "CreateVideo": ("fps",),
    "SaveVideo": ("filename_prefix", "format", "codec"),
}
_CONTROLS = {"fixed", "increment", "decrement", "randomize"}


def default_widget_names(node_type: str) -> tuple[str, ...]:
    if node_type in WIDGETS:
        return WIDGETS[node_type]
    spec = NODE_SPECS.get(node_type)
    return spec.widgets if spec is not None else ()


def widget_names_from_object_info(info: Mapping[str, Any]) -> Callable[[str], tuple[str, ...]]:
    widget_types = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}

    def names(node_type: str) -> tuple[str, ...]:
        spec = info.get(node_type, {}).get("input", {})
        out = []
        for group in ("required", "optional"):
            for name, decl in spec.get(group, {}).items():
                kind = decl[0] if isinstance(decl, list) and decl else None
                if isinstance(kind, list) or kind in widget_types:
                    out.append(name)
        return tuple(out)

    return names


def ui_to_api(
    doc: Mapping[str, Any],
    widget_names: Callable[[str], tuple[str, ...]] = default_widget_names,
) -> dict[str, Any]:
    links = {
        entry[0]: (str(entry[1]), entry[2]) for entry in doc["links"] if isinstance(entry, list)
    }
    prompt: dict[str, Any] = {}
    for node in doc["nodes"]:
        if node.get("mode", 0) in (2, 4):
            continue
        inputs: dict[str, Any] = {}
        values = node.get("widgets_values") or []
        if isinstance(values, dict):
            inputs.update(values)
        else:
            position = 0
            for name in widget_names(node["type"]):
                if position >= len(values):
                    break
                inputs[name] = values[position]
                position += 1
                if (
                    name in ("seed", "noise_seed")
                    and position < len(values)
                    and (values[position] in _CONTROLS)
                ):
                    position += 1
        for slot in node.get("inputs") or []:
            if slot.get("link") is not None:
                inputs[slot["name"]] = list(links[slot["link"]])
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs}
    return prompt
