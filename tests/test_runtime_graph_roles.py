"""The reference runtime's hand-built graph refuses a swap of two roles' files.

Note: both swapped roles are roles of the runtime's graph, so the resolver refuses
this even without ``strict_roles``; a test that fails when ``strict_roles`` alone is
dropped needs a file whose release role is one the runtime does not have."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from runtime_world import build_world

from reference_runtime.runtime import _runtime_graph
from sonic_registry.bundle import verify_bundle
from sonic_registry.registry import Registry
from sonic_registry.resolver import analyze_graph
from sonic_registry.signing import load_public_key
from sonic_registry.trust import TrustStore


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_world(tmp_path_factory.mktemp("world"))


def test_swapping_two_roles_files_in_the_runtime_graph_is_refused(
    world: dict[str, Path],
) -> None:
    verified = verify_bundle(world["v1.3.0"], public_keys=[load_public_key(world["pub"])])
    sources = dict.fromkeys(("audio_encoder", "motion_decoder", "renderer"), verified)
    root = world["v1.3.0"].resolve()
    graph = _runtime_graph(sources, root, "test")
    with Registry.from_statements([verified], TrustStore()) as reg:
        assert analyze_graph(graph, reg, root, check_params=False).problems == ()
        by_node = {w.node: w for w in graph.weights}
        enc, dec = by_node["audio_encoder"], by_node["motion_decoder"]
        swapped = dataclasses.replace(
            graph,
            weights=tuple(
                dataclasses.replace(w, path=dec.path)
                if w is enc
                else dataclasses.replace(w, path=enc.path)
                if w is dec
                else w
                for w in graph.weights
            ),
        )
        problems = [str(p) for p in analyze_graph(swapped, reg, root, check_params=False).problems]
    assert any("expected the audio_encoder component" in p for p in problems), problems
    assert any("expected the motion_decoder component" in p for p in problems), problems
