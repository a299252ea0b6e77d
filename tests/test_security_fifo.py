"""A FIFO in place of any input file is refused at once (exit 2, one line), never waited on.

Each case runs the real CLI in a subprocess with a timeout: before the fix,
``open()`` on a FIFO with no writer blocked forever, so a hang is the failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Keys

CLI = [sys.executable, "-c", "from sonic_registry.cli import main; main()"]
HOOK = [sys.executable, "-m", "sonic_registry.precommit"]


def _fifo(path: Path) -> Path:
    if path.exists():
        path.unlink()
    os.mkfifo(path)
    return path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:  # pragma: no cover - the failure being tested
        pytest.fail(f"hung on a FIFO: {args}")


CASES = [
    "envelope",
    "release.toml",
    "trust",
    "public-key",
    "audit-log",
    "audit-append",
    "resolve-graph",
    "convert-source",
    "hook-envelope",
    "hook-trust",
]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
@pytest.mark.parametrize("case", CASES)
def test_fifo_input_is_refused_not_waited_on(
    case: str,
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    trust_file: Path,
    official_key: Keys,
) -> None:
    bundle = make_bundle("b")
    trust, key = str(trust_file), str(official_key.key_path)
    fifo = tmp_path / "fifo"
    expect_code = 2
    if case == "envelope":
        _fifo(bundle / "release.dsse.json")
        args, fifo = [*CLI, "verify", str(bundle), "--trust", trust], bundle / "release.dsse.json"
    elif case == "release.toml":
        _fifo(bundle / "release.toml")
        args, fifo = [*CLI, "sign", str(bundle), "--key", key], bundle / "release.toml"
    elif case == "trust":
        args = [*CLI, "verify", str(bundle), "--trust", str(_fifo(fifo))]
    elif case == "public-key":
        args = [*CLI, "verify", str(bundle), "--public-key", str(_fifo(fifo))]
    elif case == "audit-log":
        args = [*CLI, "audit", "verify", str(_fifo(fifo))]
    elif case == "audit-append":
        from sonic_registry.audit import AuditLog
        from sonic_registry.errors import UnreadableInputError

        with pytest.raises(UnreadableInputError, match="special file"):
            AuditLog(_fifo(fifo)).append({"event": "x"})
        return
    elif case == "resolve-graph":
        fifo = tmp_path / "graph.json"
        args = [*CLI, "resolve", str(_fifo(fifo)), "--registry", str(tmp_path / "reg"),
                "--trust", trust]  # fmt: skip
    elif case == "convert-source":
        fifo = tmp_path / "src.pth"
        args = [*CLI, "convert", str(_fifo(fifo)), str(tmp_path / "out.safetensors")]
    else:
        repo = tmp_path / "repo"
        repo.mkdir()
        subprocess.run(["git", "init", "-q", str(repo)], check=True)
        shutil.copytree(bundle, repo / "b")
        shutil.copyfile(trust_file, repo / "trust.json")
        if case == "hook-envelope":
            fifo = _fifo(repo / "b" / "release.dsse.json")
            expect_code = 1  # the hook reports the bundle as failing, one line
        else:
            fifo = _fifo(repo / "trust.json")
        out = _run([*HOOK, "verify", "--trust", "trust.json"], repo)
        assert out.returncode == expect_code, out.stdout + out.stderr
        assert "FIFO" in out.stdout + out.stderr or "cannot read" in out.stdout + out.stderr
        assert "Traceback" not in out.stderr
        return
    out = _run(args, tmp_path)
    assert out.returncode == expect_code, out.stdout + out.stderr
    assert str(fifo.name) in out.stderr and "FIFO" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
