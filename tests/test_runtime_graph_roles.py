"""The reference runtime's hand-built graph refuses a swap of two roles' files.

Both swapped roles of the first test are roles of the runtime's graph, so the
resolver refuses that even without ``strict_roles``; the second test loads a file
whose release role the graph has no node for, which only ``strict_roles`` (set by
``reference_runtime.runtime._runtime_graph``) refuses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from runtime_world import build_world

from reference_runtime.runtime import _runtime_graph
from sonic_registry.bundle import VerifiedRelease, verify_bundle
from sonic_registry.registry import Registry
from sonic_registry.resolver import analyze_graph
from sonic_registry.signing import load_public_key
from sonic_registry.trust import TrustStore
from sonic_registry.workflows.graph import Graph


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_world(tmp_path_factory.mktemp("world"))


def _release_and_graph(world: dict[str, Path]) -> tuple[VerifiedRelease, Path, Graph]:
    """The world's verified 1.3.0 release, its folder, and the graph the runtime builds."""
    verified = verify_bundle(world["v1.3.0"], public_keys=[load_public_key(world["pub"])])
    sources = dict.fromkeys(("audio_encoder", "motion_decoder", "renderer"), verified)
    root = world["v1.3.0"].resolve()
    return verified, root, _runtime_graph(sources, root, "test")


def test_swapping_two_roles_files_in_the_runtime_graph_is_refused(
    world: dict[str, Path],
) -> None:
    verified, root, graph = _release_and_graph(world)
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


def test_runtime_graph_refuses_a_role_it_has_no_node_for_only_by_strict_roles(
    world: dict[str, Path],
) -> None:
    verified, root, graph = _release_and_graph(world)
    assert graph.strict_roles
    by_node = {w.node: w for w in graph.weights}
    renderer = by_node["renderer"].path
    # The audio encoder's slot loads the renderer's file; the graph has no renderer node.
    odd = dataclasses.replace(
        graph,
        weights=tuple(
            dataclasses.replace(w, path=renderer, interface="") if w.node == "audio_encoder" else w
            for w in graph.weights
            if w.node != "renderer"
        ),
    )
    refusal = "expected the audio_encoder component"
    with Registry.from_statements([verified], TrustStore()) as reg:
        strict = [str(p) for p in analyze_graph(odd, reg, root, check_params=False).problems]
        loose = dataclasses.replace(odd, strict_roles=False)
        lenient = [str(p) for p in analyze_graph(loose, reg, root, check_params=False).problems]
    assert any(refusal in p and "loads the renderer component" in p for p in strict), strict
    # Without strict_roles a role the graph does not know passes: the flag is what refuses.
    assert not any(refusal in p for p in lenient), lenient
