"""``python -m reference_runtime generate``: JSON output and the usage exit code.

The refusals (exit 1) are in ``test_runtime_cli_refusals.py``: each command
starts a Python that imports torch, so the two files run on two workers.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from runtime_world import build_world, cli, common_args


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_world(tmp_path_factory.mktemp("world"))


def test_cli_generate_json(world: dict[str, Path], tmp_path: Path) -> None:
    proc = cli("generate", "--bundle", str(world["v1.3.0"]), "--out", str(tmp_path / "a.mp4"),
               "--json", *common_args(world, tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] and doc["release"] == "sonic-reference@1.3.0#1" and doc["audit_seq"] == 1


def test_cli_generate_unreadable_bundle_is_exit_2(world: dict[str, Path], tmp_path: Path) -> None:
    proc = cli("generate", "--bundle", str(tmp_path / "nope"), "--out", str(tmp_path / "d.mp4"),
               *common_args(world, tmp_path))  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert not (tmp_path / "d.mp4").exists()
