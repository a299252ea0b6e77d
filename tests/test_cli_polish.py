"""What a new user runs first: pipes into ``head``, ``--json`` usage errors, ``--version``.

Everything goes through the real ``sonic-registry`` executable in a subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Keys

EXE = str(Path(sys.executable).with_name("sonic-registry"))


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [EXE, *map(str, args)],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def run_into_closed_pipe(*args: str | Path, cwd: Path) -> tuple[int, str]:
    """Run with a stdout whose reader is already gone, as ``... | head -0`` would leave it."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # closed before the child writes a byte: every write is EPIPE
    try:
        proc = subprocess.run(
            [EXE, *map(str, args)],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("--version",),
        ("verify", "{bundle}", "--public-key", "{pub}", "--no-record"),
        ("verify", "{bundle}", "--public-key", "{pub}", "--no-record", "--json"),
        ("trust", "show", "--trust", "{trust}"),
        ("verify", "--no-such-option", "--json"),
    ],
    ids=["help", "version", "verify", "verify-json", "trust-show-table", "json-usage-error"],
)
def test_closed_stdout_ends_quietly(
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    official_key: Keys,
    trust_file: Path,
    args: tuple[str, ...],
) -> None:
    bundle = make_bundle()
    fill = {"bundle": str(bundle), "pub": str(official_key.pub_path), "trust": str(trust_file)}
    code, err = run_into_closed_pipe(*(a.format(**fill) for a in args), cwd=tmp_path)
    assert err == ""  # no "error: Broken pipe", no "Exception ignored ..."
    assert code == 141  # 128 + SIGPIPE, what a shell reports for `cat big | head`


def test_json_usage_errors_are_one_json_object(tmp_path: Path) -> None:
    for args in (
        ("verify", "--no-such-option", "--json"),
        ("verify", "--json"),  # missing MODEL_DIR
        ("trust", "threshold", "official", "0", "--json"),  # out of range
        ("verify", str(tmp_path / "absent"), "--digest", "md5", "--json"),
    ):
        r = run(*args, cwd=tmp_path)
        assert r.returncode == 2, args
        doc = json.loads(r.stdout)  # the whole of stdout is one object
        assert doc["ok"] is False and doc["exit_code"] == 2
        [err] = doc["errors"]
        assert err["error"] == "UsageError" and err["where"].startswith("sonic-registry")
        assert err["detail"]
        assert r.stderr == ""
    plain = run("verify", "--no-such-option", cwd=tmp_path)
    assert plain.returncode == 2 and plain.stdout == ""
    assert "No such option '--no-such-option'" in plain.stderr


def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    r = run("--version", cwd=tmp_path)
    assert r.returncode == 0
    assert r.stdout.strip() == f"sonic-registry, version {version('sonic-registry')}"
