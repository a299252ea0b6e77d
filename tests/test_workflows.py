"""ComfyUI / pipeline.toml parsing: real files, structure errors, fuzzing."""

from __future__ import annotations

import contextlib
import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sonic_install import WORKFLOWS

from sonic_registry.errors import SonicRegistryError
from sonic_registry.workflows import InvalidGraph, load_graph, parse_graph_bytes

# CI and every project machine keep shared/ beside the repository checkout.
SHARED = Path(__file__).resolve().parents[2] / "shared" / "research" / "workflows"
ALL = sorted(p for p in WORKFLOWS.rglob("*") if p.is_file())


def test_test_data_is_a_verbatim_copy_with_provenance() -> None:
    assert (WORKFLOWS / "SOURCES.md").is_file()
    assert len([p for p in ALL if p.suffix == ".json"]) == 7
    if SHARED.is_dir():  # the shared research folder exists on the project machines
        shared = sorted(p.relative_to(SHARED) for p in SHARED.rglob("*") if p.is_file())
        assert shared == [p.relative_to(WORKFLOWS) for p in ALL]
        for rel in shared:
            assert (SHARED / rel).read_bytes() == (WORKFLOWS / rel).read_bytes()


def test_ui_widgets_are_named_positionally_skipping_seed_control() -> None:
    g = load_graph(WORKFLOWS / "smthemex-ComfyUI_Sonic/example.json")
    sampler = g.nodes["15"]
    assert dict(sampler.values) == {
        "seed": 443489271,
        "inference_steps": 25,
        "dynamic_scale": 1,
        "fps": 25,
    }
    assert sampler.linked["model"] == ("14", 0)
    assert {w.path for w in g.weights} >= {
        "sonic/unet.pth",
        "sonic/audio2token.pth",
        "checkpoints/svd_xt_1_1.safetensors",
    }


def test_linked_widget_is_not_reported_as_a_param(tmp_path: Path) -> None:
    doc = json.loads(
        (WORKFLOWS / "frankpeng1218-Comfyui_AI_from_0_2025course/sonic.json").read_text()
    )
    sampler = next(n for n in doc["nodes"] if n["type"] == "SONICSampler")
    fps_input = next(i for i in sampler["inputs"] if i["name"] == "fps")
    prim = {
        "id": 99,
        "type": "PrimitiveNode",
        "inputs": [],
        "widgets_values": [30],
        "outputs": [{"name": "FLOAT", "type": "FLOAT", "links": [999]}],
    }
    doc["nodes"].append(prim)
    fps_input["link"] = 999
    doc["links"].append([999, 99, 0, sampler["id"], sampler["inputs"].index(fps_input), "FLOAT"])
    p = tmp_path / "w.json"
    p.write_text(json.dumps(doc))
    g = load_graph(p)
    assert "fps" not in g.params and g.params["inference_steps"] == 25


def test_dangling_output_slot_and_duplicate_ids() -> None:
    doc = json.loads((WORKFLOWS / "smthemex-ComfyUI_Sonic/example.json").read_text())
    doc["links"][0][2] = 7  # origin slot 7 of a 2-output node
    with pytest.raises(InvalidGraph, match="no output slot 7"):
        parse_graph_bytes(json.dumps(doc).encode(), source="w.json")
    doc = json.loads((WORKFLOWS / "smthemex-ComfyUI_Sonic/example.json").read_text())
    doc["nodes"].append(doc["nodes"][0])
    with pytest.raises(InvalidGraph, match="duplicate node id"):
        parse_graph_bytes(json.dumps(doc).encode(), source="w.json")


def test_api_prompt_wrapped_in_prompt_key() -> None:
    body = json.loads((WORKFLOWS / "Peleke-comfyui-mcp/fda4c6c/lipsync-sonic.json").read_text())
    g = parse_graph_bytes(json.dumps({"prompt": body, "client_id": "x"}).encode(), source="p.json")
    assert g.format == "comfyui-api" and g.params["duration"] == 99999


def test_thousand_node_chain_without_recursion() -> None:
    n = 5000
    body = {
        str(i): {"class_type": "Reroute", "inputs": {"x": [str(i - 1), 0]} if i else {}}
        for i in range(n)
    }
    g = parse_graph_bytes(json.dumps(body).encode(), source="chain.json")
    assert len(g.nodes) == n
    body["0"]["inputs"] = {"x": [str(n - 1), 0]}
    with pytest.raises(InvalidGraph, match="cycle"):
        parse_graph_bytes(json.dumps(body).encode(), source="chain.json")


# --- fuzzing: any input gives a Graph or a one-line library error --------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=_json)
def test_fuzz_arbitrary_json_never_crashes(doc: object) -> None:
    with contextlib.suppress(SonicRegistryError):
        parse_graph_bytes(json.dumps(doc).encode(), source="fuzz.json")


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1), which=st.sampled_from([p for p in ALL if p.suffix == ".json"])
)
def test_fuzz_mutated_real_workflows_never_crash(seed: int, which: Path) -> None:
    rng = random.Random(seed)
    doc = json.loads(which.read_text())

    def mutate(value: object, depth: int = 0) -> object:
        if isinstance(value, dict) and value:
            key = rng.choice(list(value))
            action = rng.random()
            if action < 0.3:
                del value[key]
            elif action < 0.6:
                value[key] = rng.choice([None, 7, "x", [], {}, [1, 2], -1, 1e308])
            else:
                mutate(value[key], depth + 1)
        elif isinstance(value, list) and value:
            i = rng.randrange(len(value))
            action = rng.random()
            if action < 0.3:
                del value[i]
            elif action < 0.6:
                value[i] = rng.choice([None, 7, "x", [], {}, ["1", 0], 10**6])
            else:
                mutate(value[i], depth + 1)
        return value

    for _ in range(rng.randint(1, 4)):
        mutate(doc)
    with contextlib.suppress(SonicRegistryError):
        parse_graph_bytes(json.dumps(doc).encode(), source=which.name)


@settings(max_examples=100, deadline=None)
@given(text=st.text(max_size=200))
def test_fuzz_pipeline_toml_text(text: str) -> None:
    with contextlib.suppress(SonicRegistryError):
        parse_graph_bytes(text.encode(), source="pipeline.toml")


def test_cycle_is_named_even_with_nodes_downstream_of_it() -> None:
    body = {
        "1": {"class_type": "A", "inputs": {"x": ["2", 0]}},
        "2": {"class_type": "B", "inputs": {"y": ["3", 0]}},
        "3": {"class_type": "C", "inputs": {"y": ["1", 0]}},
        "4": {"class_type": "D", "inputs": {"z": ["1", 0]}},
    }
    with pytest.raises(InvalidGraph, match=r"cycle between nodes 3 -> 2 -> 1 -> 3"):
        parse_graph_bytes(json.dumps(body).encode(), source="c.json")


def test_subgraph_hiding_a_loader_is_refused_not_passed() -> None:
    doc = json.loads((WORKFLOWS / "smthemex-ComfyUI_Sonic/example.json").read_text())
    sg_id = "11111111-2222-3333-4444-555555555555"
    doc["nodes"].append(
        {"id": 500, "type": sg_id, "inputs": [], "outputs": [], "widgets_values": ["unet_b.pth"]}
    )
    doc["definitions"] = {
        "subgraphs": [
            {
                "id": sg_id,
                "name": "Sonic loader",
                "inputs": [{"name": "sonic_unet", "type": "COMBO"}],
                "outputs": [],
                "links": [],
                "nodes": [{"id": 1, "type": "SONICTLoader", "inputs": [], "widgets_values": []}],
            }
        ]
    }
    with pytest.raises(InvalidGraph, match="subgraph 'Sonic loader', which contains SONICTLoader"):
        parse_graph_bytes(json.dumps(doc).encode(), source="w.json")
    doc["definitions"]["subgraphs"][0]["nodes"][0]["type"] = "ImageScale"
    g = parse_graph_bytes(json.dumps(doc).encode(), source="w.json")
    assert f"node 500 ({sg_id})" in g.unknown_nodes


def test_odd_json_types_are_errors_not_crashes() -> None:
    doc = json.loads((WORKFLOWS / "smthemex-ComfyUI_Sonic/example.json").read_text())
    sampler = next(n for n in doc["nodes"] if n["type"] == "SONICSampler")
    sampler["widgets_values"][1] = ["randomize"]  # a list where the seed control goes
    g = parse_graph_bytes(json.dumps(doc).encode(), source="w.json")
    assert g.nodes[str(sampler["id"])].values["seed"] == 443489271
    doc = json.loads((WORKFLOWS / "smthemex-ComfyUI_Sonic/example.json").read_text())
    doc["definitions"] = {
        "subgraphs": [
            {"id": ["not", "a", "string"], "nodes": []},
            {"id": "x", "nodes": [{"id": 1, "type": ["SONICTLoader"]}]},
        ]
    }
    doc["nodes"].append({"id": 500, "type": "x", "inputs": [], "outputs": []})
    parse_graph_bytes(json.dumps(doc).encode(), source="w.json")
    body = json.loads((WORKFLOWS / "Peleke-comfyui-mcp/fda4c6c/lipsync-sonic.json").read_text())
    node = next(n for n in body.values() if "seed" in n.get("inputs", {}))
    node["inputs"]["seed"] = int("9" * 400)
    try:
        g = parse_graph_bytes(json.dumps(body).encode(), source="p.json")
    except SonicRegistryError:
        pass
    else:
        assert g.params["seed"] == int("9" * 400)
