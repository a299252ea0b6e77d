"""The README's examples, run from the README's own text so the two cannot drift.

The pre-commit configuration is taken verbatim from README.md and run with the
real ``pre-commit`` and real ``git commit``. Its ``repo:`` URL is the project's
public address, which tests cannot reach; git's ``url.<base>.insteadOf`` (in the
test's own HOME) points that address at this checkout, so pre-commit clones the
very commit the README pins, from this repository's history.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from test_precommit_git import BIN, PROJECT, Repo, _env

README = PROJECT / "README.md"


def readme_block(heading: str, lang: str) -> str:
    """The first ```lang block after ``heading`` in README.md, exactly as written."""
    text = README.read_text("utf-8")
    start = text.index(f"\n{heading}\n")
    match = re.compile(rf"^```{lang}\n(.*?)^```$", re.S | re.M).search(text, start)
    assert match is not None, f"no ```{lang} block after {heading!r}"
    return match.group(1)


def test_readme_precommit_config_works_as_written(
    tmp_path: Path, make_bundle: Callable[..., Path], trust_file: Path
) -> None:
    config = readme_block("## pre-commit hooks for model repositories", "yaml")
    url = re.search(r"repo: (\S+)", config)
    rev = re.search(r"rev: ([0-9a-f]{40})\b", config)
    assert url and rev, "the README must pin the hook repository to a full commit sha"
    known = subprocess.run(
        ["git", "cat-file", "-e", f"{rev.group(1)}^{{commit}}"], cwd=PROJECT, capture_output=True
    )
    if known.returncode != 0 and not (PROJECT / ".git").exists():
        pytest.skip("not a git checkout of the project: the pinned commit cannot be cloned")
    assert known.returncode == 0, f"README pins {rev.group(1)}, not a commit of this repository"

    env = _env(tmp_path)
    (tmp_path / "home" / ".gitconfig").write_text(
        f'[url "{PROJECT}"]\n\tinsteadOf = {url.group(1)}\n'
    )
    path = tmp_path / "model-repo"
    path.mkdir()
    make_bundle("model-repo/checkpoints/Sonic", version="1.3.0")
    shutil.copyfile(trust_file, path / "trust.json")
    # A workflow whose file names are relative to --models-dir (checkpoints).
    (path / "sonic.pipeline.toml").write_text(
        "[params]\ninference_steps = 25\n\n"
        + "".join(
            f'[nodes.{role}]\nfile = "Sonic/{name}"\n\n'
            for role, name in (
                ("audio_encoder", "audio2token.safetensors"),
                ("motion_decoder", "audio2bucket.safetensors"),
                ("unet", "unet.safetensors"),
            )
        )
    )
    (path / ".pre-commit-config.yaml").write_text(config)
    repo = Repo(path, env)
    repo.git("init", "-q")
    install = subprocess.run(
        [str(BIN / "pre-commit"), "install"], cwd=path, env=env, capture_output=True, text=True
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert "pre-commit installed at .git/hooks/pre-commit" in install.stdout

    first = repo.commit("signed release")
    out = first.stdout + first.stderr
    assert first.returncode == 0, out
    for name in ("sonic-registry verify", "sonic-registry no-pickle", "sonic-registry workflows"):
        assert re.search(rf"{name} .*\.+Passed", out), out

    # The README session's tamper: one byte of the UNet changes.
    unet = path / "checkpoints" / "Sonic" / "unet.safetensors"
    data = bytearray(unet.read_bytes())
    data[-1] ^= 1
    unet.write_bytes(bytes(data))
    out = repo.refused("tweak")
    assert re.search(r"sonic-registry verify .*\.+Failed", out), out
    assert "checkpoints/Sonic/unet.safetensors: sha256: expected" in out

    # A workflow that loads a file missing under --models-dir names itself.
    (path / "sonic.pipeline.toml").write_text(
        '[params]\ninference_steps = 25\n\n[nodes.unet]\nfile = "Sonic/unet_ema.safetensors"\n'
    )
    out = repo.refused("point at a missing file")
    assert re.search(r"sonic-registry workflows .*\.+Failed", out), out
    assert "sonic.pipeline.toml: checkpoints/Sonic/unet_ema.safetensors: no such file" in out


def test_example_config_file_matches_the_readme() -> None:
    """hooks/pre-commit-config.example.yaml and docs/precommit.md hold the README's config."""
    config = readme_block("## pre-commit hooks for model repositories", "yaml")
    docs = (PROJECT / "docs" / "precommit.md").read_text("utf-8")
    assert f"```yaml\n{config}```\n" in docs
    example = (PROJECT / "hooks" / "pre-commit-config.example.yaml").read_text("utf-8")
    body = "".join(line + "\n" for line in example.splitlines() if not line.startswith("#"))
    assert body == config


def console_steps(containing: str) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) of the README ```console block holding ``containing``."""
    text = README.read_text("utf-8")
    blocks = re.findall(r"^```console\n(.*?)^```$", text, re.S | re.M)
    [block] = [b for b in blocks if containing in b]
    steps: list[tuple[str, list[str]]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
    return steps


def _shape(line: str) -> str:
    """A line with its key ids and digests (hex runs of 16+) blanked: they differ per run."""
    return re.sub(r"\b[0-9a-f]{16,64}\b", "HEX", line)


def test_readme_audit_sign_and_verify_session(tmp_path: Path) -> None:
    """The README's `audit sign` and `audit verify` lines, run as written by a shell."""
    from test_audit import fill

    from sonic_registry.signing import generate_key, save_private_key

    key = generate_key("ed25519")
    save_private_key(key, tmp_path / "release-key.key", b"s3cret")
    (tmp_path / "release.pub").write_text(key.public.to_pem())
    fill(tmp_path / "generations.jsonl", 2)
    sign, verify = console_steps("audit sign")[:2]
    assert " audit sign generations.jsonl " in sign[0]
    assert verify[0].startswith("sonic-registry audit verify generations.jsonl")
    for cmd, expected in (sign, verify):
        proc = subprocess.run(
            cmd,
            shell=True,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={**_env(tmp_path), "PATH": f"{BIN}:/usr/bin:/bin"},
        )
        assert proc.returncode == 0, proc.stderr
        assert [_shape(x) for x in proc.stdout.splitlines()] == [_shape(x) for x in expected]
    assert (tmp_path / "generations.jsonl.head.json").is_file()


def test_readme_states_the_default_expiry() -> None:
    from datetime import timedelta

    from sonic_registry.manifest import DEFAULT_LIFETIME

    assert timedelta(days=365) == DEFAULT_LIFETIME
    assert "expires 365 days after it is signed" in " ".join(README.read_text().split())


def test_readme_shell_completion_lines_work(tmp_path: Path) -> None:
    """The README's bash line installs a completion that really completes subcommands."""
    blocks = re.findall(r"^```sh\n(.*?)^```$", README.read_text("utf-8"), re.S | re.M)
    [sh] = [b for b in blocks if "_SONIC_REGISTRY_COMPLETE" in b]
    bash_line = next(line for line in sh.splitlines() if "bash_source" in line)
    env = {**_env(tmp_path), "PATH": f"{BIN}:/usr/bin:/bin"}
    installed = subprocess.run(
        ["bash", "-c", bash_line.split("#")[0] + "\ncomplete -p sonic-registry"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr
    assert "sonic-registry" in installed.stdout
    words = subprocess.run(
        ["sonic-registry"],
        env={**env, "_SONIC_REGISTRY_COMPLETE": "bash_complete",
             "COMP_WORDS": "sonic-registry ver", "COMP_CWORD": "1"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert words.stdout.split() == ["plain,verify"]


def test_readme_model_signing_vectors_session() -> None:
    """The README's session over model_signing's own test models, run as written by a shell."""
    vectors = PROJECT.parent / "shared" / "vectors" / "model-transparency"
    if not vectors.is_dir():
        pytest.skip("model_signing vectors not checked out beside the repo")
    import os
    import sys

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    steps = console_steps("v1.0.0-elliptic-key/signme-1")
    assert len(steps) == 6
    for command, expected in steps:
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=vectors,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        # Errors and warnings go to stderr, after the report and before the shell's
        # `echo "exit $?"`: the order a terminal shows them in.
        lines = (proc.stdout + proc.stderr).splitlines()
        shown = [x for x in lines if not x.startswith("exit ")] + [
            x for x in lines if x.startswith("exit ")
        ]
        assert shown == expected, command
