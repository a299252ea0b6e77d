"""The unchanged-registry fast path (no python-tuf import) and the streamed listing.

The fast path lists from the local index when the server's timestamp is
byte-identical to the one a complete refresh verified, nothing has expired and
no new root exists; everything else must take ngclient's full refresh. These
tests use the attack tests' in-memory mirror (``World``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
import test_registry_tuf_attacks
from hypothesis import given
from hypothesis import strategies as st
from packaging.version import Version
from test_registry_tuf_attacks import World, _cli, _one_line

from sonic_registry.registry import tuf_fresh
from sonic_registry.registry.index import version_sort_key
from sonic_registry.registry.tuf_client import TufSource

_CHILD = """
import sys
from sonic_registry.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
tuf = sorted(m for m in sys.modules if m == "tuf" or m.startswith("tuf."))
print("tuf modules:", len(tuf), file=sys.stderr)
sys.exit(code)
"""
world = test_registry_tuf_attacks.world  # the same in-memory mirror and releases


@pytest.fixture
def full_refreshes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts ngclient refreshes (TufSource._sync) made in this process."""
    calls: list[int] = []
    original = TufSource._sync

    def spy(self: TufSource, prefetch: object) -> None:
        calls.append(1)
        original(self, prefetch)  # type: ignore[arg-type]

    monkeypatch.setattr(TufSource, "_sync", spy)
    return calls


def _list_in_child(world: World) -> subprocess.CompletedProcess[str]:
    args = ["registry", "list", "--registry", world.mirror.url, "--trust", str(world.trust)]
    return subprocess.run(
        [sys.executable, "-c", _CHILD, *args],
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_unchanged_registry_is_listed_with_two_requests_and_without_importing_tuf(
    world: World,
) -> None:
    assert world.list()[0] == 0  # a full refresh fills the cache
    world.mirror.requests.clear()
    proc = _list_in_child(world)
    assert proc.returncode == 0, proc.stderr
    assert "sonic 1.2.0 serial 1" in proc.stdout and "sonic 1.3.0 serial 1" in proc.stdout
    assert "tuf modules: 0" in proc.stderr
    assert sorted(world.mirror.requests) == ["metadata/2.root.json", "metadata/timestamp.json"]


def test_a_new_timestamp_takes_the_full_refresh(world: World, full_refreshes: list[int]) -> None:
    assert world.list()[0] == 0
    assert world.list()[0] == 0
    assert len(full_refreshes) == 1  # the second run took the fast path
    world.add(world.make_bundle("v14", version="1.4.0"))
    world.sync_mirror()
    code, out, err = world.list()
    assert code == 0, err
    assert "sonic 1.4.0 serial 1" in out and len(full_refreshes) == 2
    # Same version, different bytes (re-signed with a later expiry): not identical, full path.
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30)
    world.mirror.files["metadata/timestamp.json"] = world.resign("timestamp.json", expires=later)
    assert world.list()[0] == 0 and len(full_refreshes) == 3
    proc = _list_in_child(world)
    assert proc.returncode == 0 and "tuf modules: 0" not in proc.stderr, proc.stderr


def test_an_identical_but_expired_timestamp_is_refused(
    world: World, full_refreshes: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert world.list()[0] == 0
    from tuf.api.metadata import Metadata

    expires = Metadata.from_bytes(world.mirror.files["metadata/timestamp.json"]).signed.expires
    later = expires + timedelta(seconds=1)
    # Past the expiry by the fast path's clock: it declines (ngclient's clock unmoved here).
    monkeypatch.setattr(tuf_fresh, "now", lambda: later)
    assert world.list()[0] == 0 and len(full_refreshes) == 2

    class Later(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return later

    import tuf.ngclient._internal.trusted_metadata_set as tms

    # Both clocks past it: the same bytes that listed a moment ago are refused (freeze).
    monkeypatch.setattr(tms.datetime, "datetime", Later)
    code, out, err = world.list()
    assert code == 1 and out == ""
    assert "TUF metadata expired" in _one_line(err)


def test_a_new_root_takes_the_full_refresh(world: World, full_refreshes: list[int]) -> None:
    assert world.list()[0] == 0
    world.mirror.files["metadata/2.root.json"] = world.resign(
        "1.root.json", key="registry-root.pem", version=2
    )
    assert world.list()[0] == 0 and len(full_refreshes) == 2


def test_a_failed_refresh_does_not_leave_an_older_timestamp_on_the_fast_path(
    world: World,
) -> None:
    """ngclient stored the new timestamp, then failed: serving the old one is a rollback."""
    assert world.list()[0] == 0
    old = world.mirror.files["metadata/timestamp.json"]
    world.add(world.make_bundle("v14", version="1.4.0"))
    world.sync_mirror()
    snapshot = json.loads(world.mirror.files["metadata/timestamp.json"])["signed"]["meta"]
    del world.mirror.files[f"metadata/{snapshot['snapshot.json']['version']}.snapshot.json"]
    assert world.list()[0] != 0  # timestamp v2 verified and stored, snapshot missing
    world.mirror.files["metadata/timestamp.json"] = old
    code, _, err = world.list()
    assert code == 1 and "rollback" in _one_line(err)


def test_listing_streams_in_pep440_order_and_json_matches(world: World) -> None:
    for name, version in (("v110", "1.10.0"), ("v19", "1.9.0"), ("rc", "1.10.0rc1")):
        world.add(world.make_bundle(name, version=version))
    world.sync_mirror()
    code, out, err = world.list()
    assert code == 0, err
    versions = [line.split()[1] for line in out.splitlines()]
    assert versions == ["1.2.0", "1.3.0", "1.9.0", "1.10.0rc1", "1.10.0"]
    code, out, err = _cli(
        ["registry", "list", "--registry", world.mirror.url, "--trust", str(world.trust), "--json"]
    )
    assert code == 0, err
    doc = json.loads(out)
    assert doc["ok"] is True and doc["skipped"] == []
    assert [r["version"] for r in doc["releases"]] == versions
    assert out == json.dumps(doc, indent=2, sort_keys=True) + "\n"  # as every --json prints


_parts = st.integers(0, 12)
_versions = st.builds(
    lambda rel, pre, post, dev, local: (
        ".".join(map(str, rel))
        + (f"{pre[0]}{pre[1]}" if pre else "")
        + (f".post{post}" if post is not None else "")
        + (f".dev{dev}" if dev is not None else "")
        + (f"+{local}" if local else "")
    ),
    st.lists(_parts, min_size=1, max_size=4),
    st.none() | st.tuples(st.sampled_from(["a", "b", "rc"]), _parts),
    st.none() | _parts,
    st.none() | _parts,
    st.none() | st.from_regex(r"[a-z0-9]{1,3}(\.[a-z0-9]{1,3}){0,2}", fullmatch=True),
)


@given(_versions, _versions)
def test_version_sort_key_orders_like_pep440(a: str, b: str) -> None:
    va, vb = Version(a), Version(b)
    ka, kb = version_sort_key(a), version_sort_key(b)
    assert (va < vb) == (ka < kb)
    assert (va == vb) == (ka == kb)


def test_start_refresh_requests_are_reused_by_the_refresh(world: World) -> None:
    from sonic_registry.registry import open_registry, start_refresh
    from sonic_registry.trust import TrustStore

    assert world.list()[0] == 0
    assert start_refresh(str(world.reg)) is None  # a directory: nothing to start
    world.mirror.requests.clear()
    early = start_refresh(world.mirror.url)
    assert early is not None
    # Both requests are under way before any trust store is loaded.
    assert isinstance(early.peek(f"{world.mirror.url}metadata/timestamp.json"), bytes)
    assert early.peek(f"{world.mirror.url}metadata/2.root.json") is not None
    assert sorted(world.mirror.requests) == ["metadata/2.root.json", "metadata/timestamp.json"]
    trust = TrustStore.load(world.trust)
    with open_registry(world.mirror.url, trust, fetcher=early) as reg:
        assert [s.version for s in reg.summaries()] == ["1.2.0", "1.3.0"]
    assert len(world.mirror.requests) == 2, world.mirror.requests  # not asked twice


def test_prefetch_makes_the_connection_pool_on_the_calling_thread() -> None:
    # Worker threads importing urllib3 would share the GIL with the caller's own
    # imports; the pool is made before any worker starts (HttpFetcher.prepare).
    import threading

    from sonic_registry.registry.fetch import HttpFetcher
    from sonic_registry.registry.tuf_sync import Prefetch

    fetcher = HttpFetcher()
    threads = threading.active_count()
    prefetch = Prefetch(fetcher)
    try:
        assert fetcher._pool is not None
        assert threading.active_count() == threads
    finally:
        prefetch.close()
