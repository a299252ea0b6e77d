"""Small holes: non-finite numbers, float versions, unanchored digest patterns, repeated lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Keys, release_toml
from hypothesis import given
from hypothesis import strategies as st

from sonic_registry.canonical import loads_strict
from sonic_registry.cli import main
from sonic_registry.errors import InvalidManifest
from sonic_registry.manifest import Release
from sonic_registry.schema import validate
from sonic_registry.trust import TrustStore
from sonic_registry.workflows.pipeline import parse_pipeline_text

HEX = "ab" * 32


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1E309", "123456789e999"])
def test_json_refuses_numbers_that_overflow_to_infinity(number: str) -> None:
    with pytest.raises(InvalidManifest, match="finite"):
        loads_strict(f'{{"data": {{"duration": {number}}}}}')


@pytest.mark.parametrize("number", ["1e400", "inf", "-inf", "nan", "+inf"])
def test_release_toml_refuses_non_finite_numbers(tmp_path: Path, number: str) -> None:
    path = tmp_path / "release.toml"
    path.write_text(release_toml().replace("fps = 25", f"fps = 25\nduration_tolerance = {number}"))
    with pytest.raises(InvalidManifest, match=r"data\.duration_tolerance: expected a finite"):
        Release.from_toml(path)


@pytest.mark.parametrize("value", ["inf", "1e400", True, None])
def test_a_signed_duration_tolerance_must_be_a_finite_number(tmp_path: Path, value: object) -> None:
    path = tmp_path / "release.toml"
    path.write_text(release_toml())
    release = Release.from_toml(path)
    predicate = release.to_predicate()
    predicate["data"] = {**predicate["data"], "duration_tolerance": value}
    with pytest.raises(InvalidManifest, match="duration_tolerance"):
        _ = Release.from_predicate(predicate).duration_tolerance


def test_pipeline_toml_refuses_non_finite_numbers() -> None:
    with pytest.raises(InvalidManifest, match="finite"):
        parse_pipeline_text("[nodes.a]\ntype = 'x'\nscale = 1e400\n", source="p.toml")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_property_finite_floats_round_trip(value: float) -> None:
    assert loads_strict(json.dumps({"v": value}))["v"] == value


def _trust_doc(**changes: object) -> dict[str, object]:
    doc: dict[str, object] = {"version": 1, "keys": {}, "roles": {}, "revoked": [], "serials": {}}
    doc.update(changes)
    return doc


@pytest.mark.parametrize("version", [1.0, 2.5, True, "1"])
def test_trust_version_must_be_an_integer(tmp_path: Path, version: object) -> None:
    path = tmp_path / "trust.json"
    path.write_text(json.dumps(_trust_doc(version=version)))
    with pytest.raises(InvalidManifest, match="version"):
        TrustStore.load(path)


@pytest.mark.parametrize("suffix", ["\n", "\r\n", " ", "0"])
def test_digest_patterns_are_anchored(suffix: str) -> None:
    with pytest.raises(InvalidManifest, match="revoked"):
        validate(_trust_doc(revoked=[HEX + suffix]), "trust")
    validate(_trust_doc(revoked=[HEX]), "trust")  # the exact digest still passes


def test_a_problem_found_twice_is_printed_once(
    make_bundle: Callable[..., Path], make_key: Callable[..., Keys]
) -> None:
    root = make_bundle()
    env = json.loads((root / "release.dsse.json").read_text())
    env["signatures"] = env["signatures"] * 2  # the same signature, twice
    (root / "release.dsse.json").write_text(json.dumps(env))
    stranger = make_key("stranger")
    res = CliRunner().invoke(main, ["verify", str(root), "--public-key", str(stranger.pub_path)])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.startswith("error:")]
    assert len(lines) == len(set(lines)) == 1, res.output


@pytest.mark.parametrize("bound", [[15.1], [1, 2, 3], ["a", 2], 7])
def test_a_signed_range_must_be_two_finite_numbers(tmp_path: Path, bound: object) -> None:
    # Found by tests/test_fuzz.py (a mutated payload with "allowed": [15.100]).
    path = tmp_path / "release.toml"
    path.write_text(release_toml())
    predicate = Release.from_toml(path).to_predicate()
    predicate["params"]["inference_steps"]["allowed"] = bound
    with pytest.raises(InvalidManifest, match="allowed"):
        Release.from_predicate(predicate)
