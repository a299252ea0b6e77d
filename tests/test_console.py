"""The console script: hashing started before the CLI loads, and an exit without teardown.

``sonic-registry`` is :func:`sonic_registry.console.run`. These tests pin what
makes its two shortcuts safe: the early hashing is adopted only by the verify
it was started for (and changes no verdict), an unclaimed one is stopped,
exit codes and output are exactly the CLI's, and atexit handlers and running
non-daemon threads are still honoured.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import Keys

import sonic_registry.bundle as bundle_mod
import sonic_registry.console as console
from sonic_registry import prehash as prehash_mod
from sonic_registry.prehash import Prehash, start_prehash

EXE = str(Path(sys.executable).with_name("sonic-registry"))


class _Exited(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _run_in_process(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> tuple[int, list[Prehash | None], list[Prehash | None]]:
    """Run ``console.run`` here; return (exit code, early hashing started, hashing verify used)."""
    started: list[Prehash | None] = []
    used: list[Prehash | None] = []
    real_start = console._start_early
    real_verify = bundle_mod.verify_bundle

    def start(args: list[str]) -> Prehash | None:
        started.append(real_start(args))
        return started[-1]

    def verify(*args: Any, **kwargs: Any) -> Any:
        used.append(kwargs.get("prehash"))
        return real_verify(*args, **kwargs)

    def fake_exit(code: int) -> None:
        raise _Exited(code)

    monkeypatch.setattr(console, "_start_early", start)
    monkeypatch.setattr(bundle_mod, "verify_bundle", verify)
    # not os._exit: _exit_now would run this pytest process's atexit handlers
    monkeypatch.setattr(console, "_exit_now", fake_exit)
    monkeypatch.setattr(sys, "argv", ["sonic-registry", *argv])
    with pytest.raises(_Exited) as exited:
        console.run()
    return exited.value.code, started, used


def test_verify_adopts_the_hashing_started_before_the_cli(
    make_bundle: Callable[..., Path], official_key: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_bundle()
    argv = ["verify", str(root), "--public-key", str(official_key.pub_path), "--no-record"]
    code, started, used = _run_in_process(monkeypatch, argv)
    assert code == 0
    assert len(started) == 1 and started[0] is not None
    assert used == started  # verify hashed with the early one, not a second pass


def test_tampered_bundle_still_fails_with_early_hashing(
    make_bundle: Callable[..., Path], official_key: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_bundle()
    target = next(root.glob("*.safetensors"))
    data = bytearray(target.read_bytes())
    data[-1] ^= 1
    target.write_bytes(bytes(data))
    argv = ["verify", str(root), "--public-key", str(official_key.pub_path), "--no-record"]
    code, started, used = _run_in_process(monkeypatch, argv)
    assert code == 1
    assert started[0] is not None and used == started


def test_other_digest_choice_starts_nothing_early(
    make_bundle: Callable[..., Path], official_key: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_bundle()
    argv = ["verify", str(root), "--digest", "sha256", "--public-key", str(official_key.pub_path)]
    code, started, used = _run_in_process(monkeypatch, [*argv, "--no-record"])
    assert code == 0
    assert started == [None]
    assert used[0] is not None  # verify started its own


def test_unclaimed_early_hashing_is_stopped(
    make_bundle: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_bundle()
    code, started, used = _run_in_process(monkeypatch, ["verify", str(root), "--no-such-flag"])
    assert code == 2 and used == []
    early = started[0]
    assert early is not None
    assert early.cancelled


def test_early_hashing_is_stopped_when_the_cli_does_not_load(
    make_bundle: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_bundle()
    started: list[Prehash | None] = []
    real_start = console._start_early

    def start(args: list[str]) -> Prehash | None:
        started.append(real_start(args))
        return started[-1]

    monkeypatch.setattr(console, "_start_early", start)
    # the CLI's import fails (as a Ctrl-C while it loads would end it)
    monkeypatch.setitem(sys.modules, "sonic_registry.cli", None)
    monkeypatch.setattr(sys, "argv", ["sonic-registry", "verify", str(root)])
    with pytest.raises(ImportError):
        console.run()
    early = started[0]
    assert early is not None
    assert early.cancelled


def test_ctrl_c_while_the_cli_loads_is_one_line_and_exit_130(
    make_bundle: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import sonic_registry.cli as cli_mod

    def interrupted(*args: Any, **kwargs: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_mod.main, "main", interrupted)
    code, started, _ = _run_in_process(monkeypatch, ["verify", str(make_bundle())])
    assert code == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert started[0] is not None and started[0].cancelled


def test_ctrl_c_while_click_parses_is_the_same_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """click turns a Ctrl-C inside its main into Abort; the root group says 'interrupted'
    (exit 130) after click's own line break, not 'Aborted!' (exit 1)."""
    from sonic_registry.cli import main

    def interrupted(ctx: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(main, "invoke", interrupted)
    with pytest.raises(SystemExit) as exited:
        main.main(["trust", "show"])
    assert exited.value.code == 130
    assert capsys.readouterr().err == "\ninterrupted\n"


def test_start_prehash_adopts_only_for_the_same_folder_and_digest_choice(
    make_bundle: Callable[..., Path],
) -> None:
    a, b = make_bundle("a"), make_bundle("b")
    early = start_prehash(a)
    assert early is not None
    assert start_prehash(a, started=early) is early
    other = start_prehash(a, prefer_blake3=False, started=early)
    assert other is not early and early.cancelled
    assert other is not None
    third = start_prehash(b, started=other)
    assert third is not other and other.cancelled


def test_progress_attached_late_gets_the_bytes_already_hashed(
    make_bundle: Callable[..., Path],
) -> None:
    root = make_bundle()
    early = start_prehash(root)
    assert early is not None
    listed = json.loads(
        prehash_mod.b64decode_dsse(
            json.loads((root / "release.dsse.json").read_text())["payload"], field="", where=""
        )
    )
    first = listed["subject"][0]
    real = os.path.realpath(root / first["name"])
    size = first["annotations"]["size"]
    # take() finishes all the hashing, before any progress bar exists
    assert early.take(real, size + 1, os.stat(real)) is not None
    seen: list[int] = []
    early.report_to(seen.append)
    assert sum(seen) == sum(s["annotations"]["size"] for s in listed["subject"])


@pytest.mark.parametrize(
    ("argv", "folder"),
    [
        (["verify", "m"], "m"),
        (["verify", "m", "--json", "--trust", "t.json"], "m"),
        (["verify", "m", "--oms", "model.sig"], None),
        (["verify", "m", "--digest=blake3"], None),
        (["verify", "m", "--help"], None),
        (["verify", "--json", "m"], None),
        (["identify", "m"], None),
        (["verify"], None),
        ([], None),
    ],
)
def test_early_folder_only_for_the_plain_form(argv: list[str], folder: str | None) -> None:
    assert console.early_verify_folder(argv) == folder


def _script(body: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run ``body`` then ``console.run()`` with ``--version`` in a fresh interpreter."""
    code = textwrap.dedent(body) + "\nimport sys\nsys.argv = ['sonic-registry', '--version']\n"
    code += "from sonic_registry.console import run\nrun()\n"
    return subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )


def test_atexit_handlers_still_run(tmp_path: Path) -> None:
    done = _script(
        """
        import atexit, pathlib, sys
        out = pathlib.Path(sys.argv[1])
        atexit.register(lambda: (out / "ran").write_text("yes"))
        """,
        tmp_path,
    )
    assert done.returncode == 0 and "sonic-registry" in done.stdout
    assert (tmp_path / "ran").read_text() == "yes"


def test_a_running_non_daemon_thread_is_waited_for(tmp_path: Path) -> None:
    done = _script(
        """
        import pathlib, sys, threading, time
        out = pathlib.Path(sys.argv[1])
        def late():
            time.sleep(0.3)
            (out / "late").write_text("done")
        threading.Thread(target=late).start()
        """,
        tmp_path,
    )
    assert done.returncode == 0
    assert (tmp_path / "late").read_text() == "done"


def test_exit_codes_and_output_are_the_clis(
    make_bundle: Callable[..., Path], official_key: Keys
) -> None:
    root = make_bundle()
    key = ["--public-key", str(official_key.pub_path), "--no-record"]
    ok = subprocess.run([EXE, "verify", str(root), *key, "--json"], capture_output=True, timeout=60)
    assert ok.returncode == 0
    assert json.loads(ok.stdout)["ok"] is True
    (root / "release.dsse.json").write_text("{}")
    bad = subprocess.run([EXE, "verify", str(root), *key], capture_output=True, timeout=60)
    assert bad.returncode in (1, 2) and bad.stderr.count(b"\n") >= 1
    usage = subprocess.run([EXE, "verify"], capture_output=True, timeout=60)
    assert usage.returncode == 2 and b"Missing argument" in usage.stderr


def test_hook_script_exit_codes_and_output(tmp_path: Path) -> None:
    """``sonic-registry-hook`` ends through the same exit path: codes and lines are the hook's."""
    hook = str(Path(sys.executable).with_name("sonic-registry-hook"))
    clean = tmp_path / "notes.txt"
    clean.write_text("hello\n")
    pickled = tmp_path / "weights.pth"
    pickled.write_bytes(b"\x80\x04\x95" + b"\x00" * 16 + b".")
    ok = subprocess.run([hook, "no-pickle", str(clean)], capture_output=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout == b""
    bad = subprocess.run([hook, "no-pickle", str(pickled)], capture_output=True, timeout=60)
    assert bad.returncode == 1 and b"weights.pth" in bad.stdout
    usage = subprocess.run([hook, "no-such-hook"], capture_output=True, timeout=60)
    assert usage.returncode == 2 and b"invalid choice" in usage.stderr
