"""``python -m reference_runtime generate`` refusals: one ``error:`` line, exit 1."""

from __future__ import annotations

from pathlib import Path

import pytest
from runtime_world import build_world, cli, common_args


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_world(tmp_path_factory.mktemp("world"))


def test_cli_refuses_mixed_releases(world: dict[str, Path], tmp_path: Path) -> None:
    proc = cli("generate", "--bundle", str(world["v1.3.0"]), "--out", str(tmp_path / "b.mp4"),
               "--component", f"audio_encoder={world['v1.2.0']}",
               *common_args(world, tmp_path))  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and "releases must not be mixed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_refuses_a_parameter_outside_allowed(world: dict[str, Path], tmp_path: Path) -> None:
    proc = cli("generate", "--bundle", str(world["v1.3.0"]), "--out", str(tmp_path / "c.mp4"),
               "--dynamic-scale", "1.5", *common_args(world, tmp_path))  # fmt: skip
    assert proc.returncode == 1 and "dynamic_scale=1.5 is above the allowed" in proc.stderr
    assert not (tmp_path / "c.mp4").exists()
