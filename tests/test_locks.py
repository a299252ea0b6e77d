"""Lock files never end up where ``git add -A`` commits them.

Real git, the real CLI for the trust store, the registry and the audit log.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Keys
from sonic_install import make_registry
from test_audit import fill

from sonic_registry.locks import file_lock, lock_path

EXE = str(Path(sys.executable).with_name("sonic-registry"))
GIT_ENV = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env=GIT_ENV, capture_output=True, text=True, check=True
    ).stdout


def test_locks_of_every_writer_stay_out_of_a_git_work_tree(
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    official_key: Keys,
    trust_file: Path,
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    bundle = make_bundle("repo/models/v13")
    trust = repo / "trust.json"
    trust.write_bytes(trust_file.read_bytes())
    for args in (
        ("trust", "add-key", str(official_key.pub_path), "--role", "community"),
        ("trust", "threshold", "official", "1"),
        ("verify", str(bundle), "--trust", str(trust)),  # records the serial under the lock
    ):
        r = subprocess.run([EXE, *args], cwd=repo, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    make_registry(repo / "registry", trust, [bundle]).close()
    fill(repo / "generations.jsonl", 2)

    git(repo, "add", "-A")
    staged = git(repo, "diff", "--cached", "--name-only").split()
    assert "trust.json" in staged and "generations.jsonl" in staged
    assert [f for f in staged if f.endswith(".lock")] == []
    locks = sorted(p.name.rsplit("-", 1)[0] for p in (repo / ".git/sonic-registry/locks").iterdir())
    assert locks == [".registry", "generations.jsonl", "trust.json"]


def test_outside_git_the_lock_is_beside_the_file(tmp_path: Path) -> None:
    assert lock_path(tmp_path / "trust.json") == (tmp_path / "trust.json.lock").resolve()


def test_every_spelling_of_a_path_gets_the_same_lock_and_it_excludes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    git(repo, "init", "-q")
    (repo / "link").symlink_to(repo / "sub")
    target = repo / "sub" / "trust.json"
    same = [lock_path(target), lock_path(repo / "link" / "trust.json")]
    monkeypatch.chdir(repo / "sub")
    same.append(lock_path("trust.json"))
    assert len(set(same)) == 1 and same[0].parent == (repo / ".git/sonic-registry/locks")
    # Mutual exclusion through two spellings of the path.
    held = threading.Event()
    order: list[str] = []

    def hold() -> None:
        with file_lock(repo / "link" / "trust.json"):
            held.set()
            time.sleep(0.3)
            order.append("first released")

    t = threading.Thread(target=hold)
    t.start()
    held.wait(5)
    with file_lock(target, timeout=10):
        order.append("second acquired")
    t.join()
    assert order == ["first released", "second acquired"]
