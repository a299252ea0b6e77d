"""Hashed bins that grow with the registry: `publish` doubles them, clients follow.

A registry published with a few bins outgrows them; `publish` moves the
targets to more bins (a new layout, with longer bin names once the hex width
changes) while the snapshot keeps listing the old bins, as TUF requires. A
client that cached the old layout and a fresh client both list every
release exactly once afterwards.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from sonic_registry.cli import main
from sonic_registry.registry import Registry, tuf_repo
from sonic_registry.registry.tuf_client import CACHE_NAME, cache_dir
from sonic_registry.signing import PrivateKey, generate_key
from sonic_registry.trust import TrustStore

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # bench/ is a top-level package of the repo, not installed
    sys.path.insert(0, str(REPO))

from bench.registry_tuf import write_release  # noqa: E402


def test_bits_for_doubles_the_bins_past_max_per_bin() -> None:
    per = tuf_repo.MAX_PER_BIN
    assert tuf_repo.bits_for(0) == tuf_repo.DEFAULT_BITS
    assert tuf_repo.bits_for(per * 32) == 5
    assert tuf_repo.bits_for(per * 32 + 1) == 6
    assert tuf_repo.bits_for(10_000) == 7
    assert tuf_repo.bits_for(per * 2 + 1, bits=1) == 2
    assert tuf_repo.bits_for(10**12) == tuf_repo.MAX_BITS


def _snapshot(reg: Path) -> dict[str, int]:
    ts = json.loads((reg / "metadata/timestamp.json").read_bytes())["signed"]
    version = ts["meta"]["snapshot.json"]["version"]
    meta = json.loads((reg / f"metadata/{version}.snapshot.json").read_bytes())["signed"]["meta"]
    return {name.removesuffix(".json"): int(m["version"]) for name, m in meta.items()}


def _list(reg: Path, work: Path) -> tuple[int, str, str]:
    out = CliRunner().invoke(
        main,
        ["registry", "list", "--registry", reg.as_uri(), "--trust", str(work / "trust.json"),
         "--registry-root", str(work / "root.json")],
    )  # fmt: skip
    return out.exit_code, out.stdout, out.stderr


def _add(reg: Path, work: Path, key: PrivateKey, first: int, count: int) -> None:
    for i in range(first, first + count):
        write_release(reg, key, i)
    with Registry(reg, TrustStore.load(work / "trust.json")) as registry:
        registry.rebuild_index()


def test_publish_adds_bins_and_clients_follow_the_new_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SONIC_REGISTRY_CACHE", str(tmp_path / "user-cache"))
    monkeypatch.setattr(tuf_repo, "MAX_PER_BIN", 1)  # one release per bin, on average
    reg, key, online = tmp_path / "reg", generate_key(), generate_key()
    TrustStore().with_key(key.public, ["official"], name="t").save(tmp_path / "trust.json")
    _add(reg, tmp_path, key, 0, 10)
    tuf_repo.init_repository(reg, generate_key(), online, bits=1)
    (tmp_path / "root.json").write_bytes((reg / "metadata/root.json").read_bytes())
    tuf_repo.publish(reg, online)
    old_layout = {n for n in _snapshot(reg) if n.startswith("bins-")}
    assert old_layout >= {f"bins-{i:x}" for i in range(16)}  # 10 releases: 16 bins
    code, out, err = _list(reg, tmp_path)
    assert code == 0 and out.count("\n") == 10, err

    _add(reg, tmp_path, key, 10, 8)  # 18 releases: 32 bins, two hex digits each
    result = tuf_repo.publish(reg, online)
    snapshot = _snapshot(reg)
    assert {f"bins-{i:02x}" for i in range(32)} <= set(snapshot)
    assert old_layout <= set(snapshot), "a snapshot may never drop a file it listed"
    assert "targets" in result.bins_changed

    code, out, err = _list(reg, tmp_path)  # the client that cached the old layout
    assert code == 0, err
    assert sorted(out.splitlines()) == sorted(set(out.splitlines())) and out.count("\n") == 18
    with sqlite3.connect(cache_dir(reg.as_uri()) / CACHE_NAME) as db:
        cached_bins = {row[0] for row in db.execute("SELECT name FROM bins")}
        owners = dict(db.execute("SELECT path, bin FROM targets"))
    assert cached_bins == {f"bins-{i:02x}" for i in range(32)}
    assert len(owners) == 18
    from tuf.api.metadata import SuccinctRoles

    succinct = SuccinctRoles([], 1, 5, tuf_repo.BIN_PREFIX)
    assert all(succinct.get_role_for_target(p) == b for p, b in owners.items())

    code, again, err = _list(reg, tmp_path)  # unchanged now
    assert code == 0 and again == out, err
