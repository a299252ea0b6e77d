"""End to end: real git repositories, the real ``pre-commit`` and real ``git commit``.

The hook repository is a tmp git repo holding a copy of this project's
``.pre-commit-hooks.yaml`` committed at a fixed commit (pre-commit clones a
hook repo at a commit, and other work on this tree must not change what the
test runs). The hooks are switched to ``language: system`` so pre-commit runs
the installed ``sonic-registry-hook`` instead of building a virtualenv from
the network. No network is used.
"""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import replace_in_file

from sonic_registry.digest import hash_file
from sonic_registry.lfs import format_pointer

PROJECT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.skipif(
    shutil.which("pre-commit", path=str(BIN)) is None or shutil.which("git") is None,
    reason="needs git and pre-commit (dev extra)",
)

GOOD_PIPELINE = """
[params]
inference_steps = 25
dynamic_scale = 1.1

[nodes.audio_encoder]
file = "models/v13/audio2token.safetensors"

[nodes.motion_decoder]
file = "models/v13/audio2bucket.safetensors"

[nodes.unet]
file = "models/v13/unet.safetensors"
"""


@dataclass
class Repo:
    path: Path
    env: dict[str, str]

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args],
            cwd=self.path,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
        )

    def commit(self, message: str) -> subprocess.CompletedProcess[str]:
        self.git("add", "-A")
        return self.git("commit", "-q", "-m", message, check=False)

    def refused(self, message: str) -> str:
        """Commit, expect the hooks to refuse it; return the hooks' output, then undo."""
        result = self.commit(message)
        assert result.returncode != 0, result.stdout + result.stderr
        self.git("reset", "-q", "--hard")
        self.git("clean", "-qfd")
        return result.stdout + result.stderr


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        PRE_COMMIT_HOME=str(tmp / "pre-commit-home"),
        HOME=str(tmp / "home"),
        GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.org",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.org",
        PRE_COMMIT_COLOR="never",
    )
    (tmp / "home").mkdir(exist_ok=True)
    return env


def _hook_repo(tmp: Path, env: dict[str, str]) -> tuple[Path, str]:
    hooks = tmp / "hook-repo"
    hooks.mkdir()
    shutil.copyfile(PROJECT / ".pre-commit-hooks.yaml", hooks / ".pre-commit-hooks.yaml")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "hooks"]):
        subprocess.run(["git", *cmd], cwd=hooks, env=env, check=True, capture_output=True)
    rev = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=hooks,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return hooks, rev


@pytest.fixture
def repo(tmp_path: Path, make_bundle: Callable[..., Path], trust_file: Path) -> Repo:
    env = _env(tmp_path)
    hooks, rev = _hook_repo(tmp_path, env)
    path = tmp_path / "model-repo"
    path.mkdir()
    make_bundle("model-repo/models/v13", version="1.3.0", step=80000)
    make_bundle("model-repo/models/v12", version="1.2.0", step=50000)
    shutil.copyfile(trust_file, path / "trust.json")
    (path / "workflows").mkdir()
    (path / "workflows" / "sonic.pipeline.toml").write_text(GOOD_PIPELINE)
    (path / ".pre-commit-config.yaml").write_text(
        f"""repos:
-   repo: {hooks}
    rev: {rev}
    hooks:
    -   id: sonic-registry-verify
        language: system
        args: [--trust, trust.json]
    -   id: sonic-registry-no-pickle
        language: system
    -   id: sonic-registry-workflows
        language: system
        args: [--trust, trust.json]
"""
    )
    repo = Repo(path, env)
    repo.git("init", "-q")
    install = subprocess.run(
        [str(BIN / "pre-commit"), "install"], cwd=path, env=env, capture_output=True, text=True
    )
    assert install.returncode == 0, install.stdout + install.stderr
    first = repo.commit("signed releases")
    assert first.returncode == 0, first.stdout + first.stderr
    return repo


def test_clean_commits_pass_and_every_refusal_names_the_file(repo: Repo) -> None:
    v13 = repo.path / "models" / "v13"

    # A clean change (a README) commits; the hooks print nothing of their own.
    (repo.path / "README.md").write_text("Sonic weights\n")
    ok = repo.commit("docs")
    assert ok.returncode == 0, ok.stdout + ok.stderr

    # A changed weight.
    data = bytearray((v13 / "unet.safetensors").read_bytes())
    data[-1] ^= 1
    (v13 / "unet.safetensors").write_bytes(bytes(data))
    out = repo.refused("tweak unet")
    assert "models/v13/unet.safetensors: sha256: expected" in out

    # An added weight no signed manifest lists.
    shutil.copyfile(v13 / "unet.safetensors", v13 / "unet_ema.safetensors")
    out = repo.refused("add ema")
    assert (
        "models/v13/unet_ema.safetensors: weight file is not listed in the signed manifest" in out
    )

    # Only the manifest changes: no weight file is part of the commit.
    toml = v13 / "release.toml"
    replace_in_file(toml, "allowed = [\n    15,\n", "allowed = [\n    5,\n")
    result = repo.commit("widen the range")
    assert result.returncode != 0
    assert "models/v13/release.toml: size: expected" in result.stdout + result.stderr
    files = repo.git("diff", "--cached", "--name-only").stdout.split()
    assert files == ["models/v13/release.toml"]
    repo.git("reset", "-q", "--hard")

    # A deleted weight: pre-commit passes no file name for a deletion at all.
    repo.git("rm", "-q", "models/v13/audio2bucket.safetensors")
    out = repo.refused("drop the motion decoder")
    assert "models/v13/audio2bucket.safetensors: expected a file, found it missing" in out

    # Only the envelope changes (a signature dropped).
    env = v13 / "release.dsse.json"
    env.write_text(env.read_text().replace('"signatures": [', '"signatures": [], "x": [', 1))
    out = repo.refused("drop signature")
    assert "models/v13/release.dsse.json:" in out


def test_pickle_mixed_workflow_and_out_of_range_param_are_refused(repo: Repo) -> None:
    (repo.path / "extra.pth").write_bytes(pickle.dumps({"w": [0.0]}, protocol=4))
    out = repo.refused("a pickle")
    assert "extra.pth: pickle checkpoint (pickle): loading it runs code" in out

    mixed = GOOD_PIPELINE.replace("models/v13/unet", "models/v12/unet")
    (repo.path / "workflows" / "mixed.pipeline.toml").write_text(mixed)
    out = repo.refused("mixed workflow")
    assert "workflows/mixed.pipeline.toml:" in out and "releases must not be mixed" in out
    assert "unet is sonic 1.2.0 step 50000" in out

    steep = GOOD_PIPELINE.replace("inference_steps = 25", "inference_steps = 5")
    (repo.path / "workflows" / "fast.pipeline.toml").write_text(steep)
    out = repo.refused("too few steps")
    assert "workflows/fast.pipeline.toml: inference_steps=5" in out


def test_lfs_pointers_are_checked_against_the_signed_digest(repo: Repo) -> None:
    unet = repo.path / "models" / "v13" / "unet.safetensors"
    real = hash_file(unet)
    unet.write_bytes(format_pointer(real.sha256, real.size))
    ok = repo.commit("track unet with LFS")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    unet.write_bytes(format_pointer("ab" * 32, real.size))
    out = repo.refused("point elsewhere")
    assert "models/v13/unet.safetensors: LFS pointer oid: expected sha256:" in out


def test_plain_git_hook_without_the_framework(repo: Repo) -> None:
    hook = repo.path / ".git" / "hooks" / "pre-commit"
    shutil.copyfile(PROJECT / "hooks" / "sonic-registry-git-hook", hook)
    hook.chmod(0o755)
    (repo.path / "README.md").write_text("ok\n")
    ok = repo.commit("docs")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (repo.path / "models" / "v13" / "stray.bin").write_bytes(pickle.dumps([1], protocol=3))
    out = repo.refused("stray pickle")
    assert "models/v13/stray.bin: pickle checkpoint (pickle)" in out
    assert "models/v13/stray.bin: weight file is not listed" in out
    assert "commit refused" in out


def test_project_config_runs_its_own_hooks_on_its_test_data(tmp_path: Path) -> None:
    """The project's .pre-commit-config.yaml checks tests/data/precommit (a copy, in tmp)."""
    env = _env(tmp_path)
    work = tmp_path / "project"
    shutil.copytree(PROJECT / "tests" / "data" / "precommit", work / "tests/data/precommit")
    shutil.copyfile(PROJECT / ".pre-commit-config.yaml", work / ".pre-commit-config.yaml")
    (work / ".venv").symlink_to(PROJECT / ".venv")
    (work / ".gitignore").write_text(".venv\n")
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "data"]):
        subprocess.run(["git", *cmd], cwd=work, env=env, check=True, capture_output=True)
    ids = ["sonic-registry-verify", "sonic-registry-no-pickle", "sonic-registry-workflows"]

    def run_hooks() -> subprocess.CompletedProcess[str]:
        argv = [str(BIN / "pre-commit"), "run", "--all-files", "--hook-stage", "pre-commit"]
        results = [
            subprocess.run([*argv, i], cwd=work, env=env, capture_output=True, text=True)
            for i in ids
        ]
        bad = [r for r in results if r.returncode != 0]
        return bad[0] if bad else results[0]

    ok = run_hooks()
    assert ok.returncode == 0, ok.stdout + ok.stderr
    weight = work / "tests/data/precommit/sonic/audio2token.safetensors"
    weight.write_bytes(weight.read_bytes()[:-4] + b"\0\0\0\0")
    bad = run_hooks()
    assert bad.returncode == 1
    assert "tests/data/precommit/sonic/audio2token.safetensors: sha256: expected" in bad.stdout
