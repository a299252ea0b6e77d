"""Attacks on a TUF-published registry, one test each (python-tuf's simulator is the model).

A mirror serves the published files from memory (``MirrorServer``) and each
test tampers with them the way an attacker who controls the mirror (and, for
the last test, the online key) could. Every attack ends in one clear line and
a documented exit code (1: a TUF check refused the registry; 2: a download
bound tripped), and the client's cache afterwards holds only metadata and
envelopes that the real publisher signed.
"""

from __future__ import annotations

import hashlib
import http.server
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from sonic_registry.cli import main
from sonic_registry.registry.tuf_client import CACHE_NAME, cache_dir

ONLINE = "registry-online.pem"


class MirrorServer:
    """A static HTTP mirror whose files live in a dict the test edits."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[str] = []
        self.drip: set[str] = set()  # paths answered one byte every 2 s
        self.endless: set[str] = set()  # paths answered with an endless body
        mirror = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                mirror.requests.append(path)
                if path in mirror.endless:
                    self._endless()
                    return
                body = mirror.files.get(path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if path in mirror.drip:
                    try:
                        for i in range(len(body)):
                            self.wfile.write(body[i : i + 1])
                            self.wfile.flush()
                            time.sleep(2)
                    except OSError:  # the client gave up, as it should
                        pass
                    return
                self.wfile.write(body)

            def _endless(self) -> None:
                self.send_response(200)
                self.end_headers()  # no Content-Length: the body never ends
                chunk = b" " * 65536
                try:
                    while True:
                        self.wfile.write(chunk)
                except OSError:
                    pass

        class Server(http.server.ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that hangs up on an attack is expected

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix != ".sqlite"
    }


def _cli(args: list[str]) -> tuple[int, str, str]:
    out = CliRunner().invoke(main, args)
    return out.exit_code, out.stdout, out.stderr


class World:
    """A publisher's registry directory, its mirror, and one client."""

    def __init__(self, tmp: Path, trust: Path, make_bundle: Callable[..., Path]) -> None:
        self.tmp, self.trust, self.make_bundle = tmp, trust, make_bundle
        self.reg = tmp / "reg"
        self.keys = tmp / "registry-keys"
        for name, version in (("v12", "1.2.0"), ("v13", "1.3.0")):
            self.add(make_bundle(name, version=version), publish=False)
        code, _, err = _cli(
            ["registry", "init", "--registry", str(self.reg), "--keys-dir", str(self.keys)]
        )
        assert code == 0, err
        self.root_json = tmp / "root.json"
        self.root_json.write_bytes((self.reg / "metadata/1.root.json").read_bytes())
        self.mirror = MirrorServer(_files(self.reg))
        self.signed: dict[str, bytes] = dict(self.mirror.files)  # all the publisher ever signed

    def add(self, bundle: Path, *, publish: bool = True) -> None:
        args = ["registry", "add", str(bundle), "--registry", str(self.reg)]
        args += ["--trust", str(self.trust), "--no-record-serial"]
        if publish:
            args += ["--online-key", str(self.keys / ONLINE)]
        code, _, err = _cli(args)
        assert code == 0, err

    def sync_mirror(self) -> None:
        """The mirror copies the publisher's directory (as after an rsync)."""
        self.mirror.files.update(_files(self.reg))
        self.signed.update(self.mirror.files)

    def list(self) -> tuple[int, str, str]:
        return _cli(
            ["registry", "list", "--registry", self.mirror.url, "--trust", str(self.trust),
             "--registry-root", str(self.root_json)]
        )  # fmt: skip

    def resign(self, name: str, key: str = ONLINE, **changes: object) -> bytes:
        """A metadata file from the mirror, changed and re-signed with ``key``."""
        from securesystemslib.signer import CryptoSigner
        from tuf.api.metadata import Metadata
        from tuf.api.serialization.json import JSONSerializer

        from sonic_registry.signing import load_private_key

        md = Metadata.from_bytes(self.mirror.files[f"metadata/{name}"])
        for attr, value in changes.items():
            setattr(md.signed, attr, value)
        md.signatures.clear()
        md.sign(CryptoSigner(load_private_key(self.keys / key).key))
        return md.to_bytes(JSONSerializer(compact=True))

    def assert_cache_holds_only_signed_files(self) -> None:
        cache = cache_dir(self.mirror.url)
        signed = set(self.signed.values())
        for path in (cache / "metadata").rglob("*.json"):
            assert path.read_bytes() in signed, f"unsigned metadata cached: {path.name}"
        db = cache / CACHE_NAME
        if db.exists():
            with sqlite3.connect(db) as conn:
                for sha, data in conn.execute("SELECT sha256, data FROM envelopes"):
                    assert hashlib.sha256(data).hexdigest() == sha
                    assert bytes(data) in signed, "an envelope the publisher never signed"


@pytest.fixture
def world(
    tmp_path: Path,
    trust_file: Path,
    make_bundle: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[World]:
    monkeypatch.setenv("SONIC_REGISTRY_CACHE", str(tmp_path / "user-cache"))
    w = World(tmp_path, trust_file, make_bundle)
    try:
        yield w
    finally:
        w.mirror.close()


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _timestamp_version(world: World) -> int:
    import json

    return int(json.loads(world.mirror.files["metadata/timestamp.json"])["signed"]["version"])


def test_baseline_fresh_client_and_one_new_release_in_five_requests(world: World) -> None:
    code, out, err = world.list()
    assert code == 0, err
    assert out.count("sonic ") == 2
    world.mirror.requests.clear()
    world.add(world.make_bundle("v14", version="1.4.0"))
    world.sync_mirror()
    code, out, err = world.list()
    assert code == 0, err
    assert "sonic 1.4.0 serial 1" in out
    # 2.root.json (absent), timestamp, snapshot, one bin, one envelope.
    assert len(world.mirror.requests) <= 5, world.mirror.requests
    world.mirror.requests.clear()
    code, _, _ = world.list()
    assert code == 0 and len(world.mirror.requests) == 2, world.mirror.requests
    world.assert_cache_holds_only_signed_files()


def test_freeze_expired_timestamp(world: World) -> None:
    past = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    world.mirror.files["metadata/timestamp.json"] = world.resign("timestamp.json", expires=past)
    code, _, err = world.list()
    assert code == 1
    assert "TUF metadata expired" in _one_line(err)
    world.assert_cache_holds_only_signed_files()


def test_freeze_timestamp_that_stops_changing_hides_nothing_past_its_expiry(world: World) -> None:
    assert world.list()[0] == 0
    frozen = world.mirror.files["metadata/timestamp.json"]
    world.add(world.make_bundle("v14", version="1.4.0"))
    world.sync_mirror()
    world.mirror.files["metadata/timestamp.json"] = frozen
    # Until the frozen timestamp expires the new release stays hidden (TUF's bound)...
    code, out, _ = world.list()
    assert code == 0 and "1.4.0" not in out
    # ...and once it has expired the client refuses the registry.
    from tuf.api.metadata import Metadata

    expires = Metadata.from_bytes(frozen).signed.expires
    later = expires + timedelta(seconds=1)

    class Later(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return later

    import tuf.ngclient._internal.trusted_metadata_set as tms

    from sonic_registry.registry import tuf_fresh

    with pytest.MonkeyPatch.context() as mp:
        # Both clocks move: the no-tuf fast path's and ngclient's.
        mp.setattr(tms.datetime, "datetime", Later)
        mp.setattr(tuf_fresh, "now", lambda: later)
        code, _, err = world.list()
    assert code == 1 and "TUF metadata expired" in _one_line(err)


def test_rollback_of_timestamp(world: World) -> None:
    old = world.mirror.files["metadata/timestamp.json"]
    world.add(world.make_bundle("v14", version="1.4.0"))
    world.sync_mirror()
    assert world.list()[0] == 0
    world.mirror.files["metadata/timestamp.json"] = old
    code, _, err = world.list()
    assert code == 1 and "rollback" in _one_line(err)
    world.assert_cache_holds_only_signed_files()


def test_rollback_of_snapshot(world: World) -> None:
    assert world.list()[0] == 0
    world.add(world.make_bundle("v14", version="1.4.0"))
    world.sync_mirror()
    assert world.list()[0] == 0
    # A validly signed timestamp (say, replayed from the publisher's pipeline)
    # that points at the previous snapshot version.
    from tuf.api.metadata import MetaFile

    version = _timestamp_version(world)
    world.mirror.files["metadata/timestamp.json"] = world.resign(
        "timestamp.json", version=version + 1, snapshot_meta=MetaFile(2)
    )
    code, _, err = world.list()
    assert code == 1 and "rollback" in _one_line(err)
    world.assert_cache_holds_only_signed_files()


def test_rollback_of_targets_bin(world: World) -> None:
    assert world.list()[0] == 0
    before = dict(world.mirror.files)
    world.add(world.make_bundle("v14", version="1.4.0"))
    world.sync_mirror()
    # The mirror serves the newest bin file name with the previous bin's content.
    changed = [
        p
        for p in world.mirror.files
        if p.startswith("metadata/") and ".bins-" in p and p not in before
    ]
    (new_bin,) = changed
    name = new_bin.split(".", 1)[1]
    version = int(new_bin.split("/")[1].split(".")[0])
    world.mirror.files[new_bin] = world.mirror.files[f"metadata/{version - 1}.{name}"]
    code, _, err = world.list()
    assert code == 1 and "rollback or mix-and-match" in _one_line(err)
    world.assert_cache_holds_only_signed_files()


def test_mix_and_match_of_two_snapshots(world: World) -> None:
    old_ts = world.mirror.files["metadata/timestamp.json"]
    world.add(world.make_bundle("v14", version="1.4.0"))
    world.sync_mirror()
    # New timestamp, but the snapshot file it names carries the old snapshot.
    import json

    new_version = json.loads(world.mirror.files["metadata/timestamp.json"])["signed"]["meta"][
        "snapshot.json"
    ]["version"]
    old_version = json.loads(old_ts)["signed"]["meta"]["snapshot.json"]["version"]
    world.mirror.files[f"metadata/{new_version}.snapshot.json"] = world.mirror.files[
        f"metadata/{old_version}.snapshot.json"
    ]
    code, _, err = world.list()
    assert code == 1 and "rollback or mix-and-match" in _one_line(err)
    world.assert_cache_holds_only_signed_files()


def test_envelope_that_differs_from_its_targets_entry(
    world: World, make_key: Callable[..., object]
) -> None:
    assert world.list()[0] == 0
    world.add(world.make_bundle("v14", version="1.4.0"))
    world.sync_mirror()
    # The mirror swaps in another release signed by the same trusted key:
    # the trust store would accept it, TUF's targets entry does not.
    other = world.make_bundle("evil", version="1.4.0", step=1)
    world.mirror.files["releases/sonic/1.4.0/1.dsse.json"] = (
        other / "release.dsse.json"
    ).read_bytes()
    code, _, err = world.list()
    assert code == 1
    assert "does not match its signed TUF targets entry" in _one_line(err)
    world.assert_cache_holds_only_signed_files()


def test_pack_that_differs_from_its_targets_entry(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sonic_registry.registry import tuf_sync

    monkeypatch.setattr(tuf_sync, "PACK_FROM", 1)  # take the pack for a single envelope too
    packs = [p for p in world.mirror.files if p.startswith("packs/")]
    assert packs
    for p in packs:
        world.mirror.files[p] = world.mirror.files[p].replace(b"sonic", b"sonix")
    code, _, err = world.list()
    assert code == 1 and "does not match its signed TUF targets entry" in _one_line(err)
    world.assert_cache_holds_only_signed_files()


def test_endless_data(world: World) -> None:
    world.mirror.endless.add("metadata/timestamp.json")
    code, _, err = world.list()
    assert code == 2 and "size cap" in _one_line(err)
    world.assert_cache_holds_only_signed_files()


def test_slow_retrieval(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SONIC_REGISTRY_DOWNLOAD_DEADLINE", "1")
    world.mirror.drip.add("metadata/timestamp.json")
    start = time.monotonic()
    code, _, err = world.list()
    assert time.monotonic() - start < 10
    assert code == 2 and "download deadline" in _one_line(err)
    world.assert_cache_holds_only_signed_files()


def test_withheld_release(world: World) -> None:
    world.add(world.make_bundle("v14", version="1.4.0"))
    world.sync_mirror()
    del world.mirror.files["releases/sonic/1.4.0/1.dsse.json"]
    for p in [p for p in world.mirror.files if p.startswith("packs/")]:
        del world.mirror.files[p]
    code, _, err = world.list()
    assert code == 1 and "withheld" in _one_line(err)
    world.assert_cache_holds_only_signed_files()


def test_compromised_online_key_rotated_by_offline_root(world: World) -> None:
    assert world.list()[0] == 0
    code, _, err = _cli(["keygen", str(world.tmp / "new-online"), "--no-passphrase"])
    assert code == 0, err
    code, out, err = _cli(
        ["registry", "rotate-online-key", "--registry", str(world.reg),
         "--root-key", str(world.keys / "registry-root.pem"),
         "--new-online-key", str(world.tmp / "new-online.key")]
    )  # fmt: skip
    assert code == 0 and "root v2" in out, err
    world.sync_mirror()
    code, out, err = world.list()  # the client follows the root chain to v2
    assert code == 0 and out.count("sonic ") == 2, err
    # The attacker still holds the old online key and signs a fresh timestamp.
    version = _timestamp_version(world)
    world.mirror.files["metadata/timestamp.json"] = world.resign(
        "timestamp.json", key=ONLINE, version=version + 1
    )
    code, _, err = world.list()
    assert code == 1 and "TUF signature check failed" in _one_line(err)
    world.assert_cache_holds_only_signed_files()


def test_targets_entry_without_sha256_is_skipped_not_a_crash(world: World) -> None:
    # Someone holding the online key lists an envelope by sha512 only.
    import json

    from tuf.api.metadata import TargetFile

    snapshot = json.loads(world.mirror.files["metadata/2.snapshot.json"])["signed"]["meta"]
    for name, meta in snapshot.items():
        if not name.startswith("bins-"):
            continue
        md_name = f"{meta['version']}.{name}"
        targets = json.loads(world.mirror.files[f"metadata/{md_name}"])["signed"]["targets"]
        envelopes = {p: t for p, t in targets.items() if p.startswith("releases/")}
        if not envelopes:
            continue
        rewritten = {}
        for path, t in targets.items():
            data = world.mirror.files[path] if path.startswith("releases/") else None
            rewritten[path] = (
                TargetFile.from_data(path, data, ["sha512"])
                if data is not None
                else TargetFile.from_dict(dict(t), path)
            )
        world.mirror.files[f"metadata/{md_name}"] = world.resign(md_name, targets=rewritten)
        world.signed[md_name] = world.mirror.files[f"metadata/{md_name}"]  # signed, if oddly
        break
    code, out, err = world.list()
    assert code == 0, err
    assert "its targets entry has no sha256" in err
    assert out.count("sonic ") == 1
    world.assert_cache_holds_only_signed_files()
