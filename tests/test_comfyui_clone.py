"""The pack cloned the usual way: ``git clone <repo> ComfyUI/custom_nodes/sonic-registry``.

A real ``git clone`` of this repository into a temporary ``custom_nodes/``,
loaded by :mod:`comfyui_clone_loader` exactly as ComfyUI's loader does, in a
Python where sonic-registry is not installed, against the stand-in server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import test_comfyui_pack
from packaging.requirements import Requirement
from test_comfyui_pack import World

from sonic_registry.comfyui_pack.install import PACK_DIR_NAME, install_pack

REPO = Path(__file__).resolve().parent.parent
LOADER = Path(__file__).resolve().parent / "comfyui_clone_loader.py"
world = test_comfyui_pack.world  # the same releases, registry and stand-in folder


def test_requirements_txt_is_pyprojects_core_dependencies() -> None:
    core = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]["dependencies"]
    lines = (REPO / "requirements.txt").read_text("utf-8").splitlines()
    listed = [line for line in lines if line.strip() and not line.startswith("#")]
    assert [str(Requirement(r)) for r in listed] == [str(Requirement(r)) for r in core]


def _clone(dest: Path) -> Path:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the clone test did not run")
    target = dest / "sonic-registry"
    done = subprocess.run(
        ["git", "clone", "--quiet", str(REPO), str(target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (target / "__init__.py").is_file() and (target / "requirements.txt").is_file()
    return target


def _load(world: World, custom_nodes: Path, *packs: str) -> tuple[dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SONIC_REGISTRY_CONFIG")}
    done = subprocess.run(
        [
            sys.executable,
            str(LOADER),
            str(custom_nodes),
            str(world.standin.base),
            json.dumps(world.api),
            *packs,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=custom_nodes,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


@pytest.mark.slow
def test_a_git_clone_loads_like_comfyui_and_refuses_a_mixed_prompt(
    world: World, tmp_path: Path
) -> None:
    custom_nodes = tmp_path / "ComfyUI" / "custom_nodes"
    custom_nodes.mkdir(parents=True)
    clone = _clone(custom_nodes)
    shutil.copyfile(world.v12 / "audio2token.pth", world.models / "sonic" / "audio2token.pth")
    seen, _stderr = _load(world, custom_nodes, "sonic-registry")
    assert seen["hidden"], "sonic-registry must not be importable before the clone loads"
    assert seen["library"] == str(clone / "sonic_registry" / "__init__.py")
    pack = seen["packs"]["sonic-registry"]
    assert pack["nodes"] == ["SonicRegistryCheck"]
    assert pack["web"] == str(clone / "sonic_registry" / "comfyui_pack" / "web")
    assert (Path(pack["web"]) / "sonic_registry.js").is_file()
    assert seen["status"] == 400
    assert set(seen["body"]["node_errors"]) == {"14", "16", "17"}
    assert seen["body"]["node_errors"]["17"]["errors"][0]["type"] == "sonic_registry_mixed"


@pytest.mark.slow
def test_an_installed_pack_and_a_clone_never_both_register(world: World, tmp_path: Path) -> None:
    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    clone = _clone(comfy / "custom_nodes")
    install_pack(comfy)
    seen, stderr = _load(world, comfy / "custom_nodes", "sonic-registry", PACK_DIR_NAME)
    assert seen["packs"]["sonic-registry"]["nodes"] == ["SonicRegistryCheck"]
    assert seen["packs"][PACK_DIR_NAME] == {"nodes": [], "web": None}
    assert stderr.count("registers nothing") == 1
    assert f"already served from {clone}" in stderr
    assert seen["status"] == 200  # consistent files: the one guard lets it run


def test_the_root_init_does_nothing_outside_comfyui() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("outside_comfyui", REPO / "__init__.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    before = set(sys.modules)
    spec.loader.exec_module(module)
    assert module.NODE_CLASS_MAPPINGS is None and module.WEB_DIRECTORY is None
    assert not {m for m in set(sys.modules) - before if m.startswith("sonic_registry")}


def test_no_library_file_runs_twice_in_the_test_process() -> None:
    """The root conftest keeps ``--doctest-modules`` from importing ``<folder>.sonic_registry``."""

    by_file: dict[str, set[int]] = {}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file and Path(file).resolve().is_relative_to(REPO / "sonic_registry"):
            by_file.setdefault(str(Path(file).resolve()), set()).add(id(module))
    assert by_file and all(len(ids) == 1 for ids in by_file.values())
