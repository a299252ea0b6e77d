"""``python -m reference_runtime generate``: JSON output and the usage exit code.

The refusals (exit 1) are in ``test_runtime_cli_refusals.py``: each command
starts a Python that imports torch, so the two files run on two workers.
"""

from __future__ import annotations

import json
import shutil
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


def test_cli_generate_lines_are_terminal_escaped(world: dict[str, Path], tmp_path: Path) -> None:
    """A bundle folder named with ESC[2K cannot erase a line of generate's output: the
    runtime prints through the library's escaping (terminal.printable)."""
    bundle = tmp_path / "evil\x1b[2Kbundle"
    shutil.copytree(world["v1.3.0"], bundle)
    out = tmp_path / "out\x1b[2K.mp4"
    proc = cli("generate", "--bundle", str(bundle), "--out", str(out),
               *common_args(world, tmp_path))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stdout + proc.stderr
    assert "evil\\x1b[2Kbundle" in proc.stdout and out.is_file(), proc.stdout
