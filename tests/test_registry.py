"""Registry: add/list/show/rebuild-index, rollback, concurrency, file:// and http:// clients."""

from __future__ import annotations

import http.server
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Keys
from sonic_install import dice_release

from sonic_registry.cli import main
from sonic_registry.digest import hash_file
from sonic_registry.errors import RollbackError, UnsignedReleaseError
from sonic_registry.registry import INDEX_NAME, LISTING_NAME, Registry
from sonic_registry.trust import TrustStore


def _trust(trust_file: Path) -> TrustStore:
    return TrustStore.load(trust_file)


@pytest.fixture
def two_versions(make_bundle: Callable[..., Path], community_key: Keys) -> list[Path]:
    return [
        make_bundle("v12", version="1.2.0", step=50000),
        make_bundle("v13", version="1.3.0", step=80000),
        dice_release(make_bundle, community_key),
    ]


def test_add_list_show_and_lookup(
    tmp_path: Path, trust_file: Path, two_versions: list[Path]
) -> None:
    reg = Registry(tmp_path / "reg", _trust(trust_file))
    results = [reg.add(b / "release.dsse.json") for b in two_versions]
    assert all(r.added for r in results)
    assert (tmp_path / "reg/releases/sonic/1.3.0/1.dsse.json").is_file()
    assert [(s.release.model, s.release.version, s.channel) for s in reg.releases()] == [
        ("dice-talk", "1.0.0", "community"),
        ("sonic", "1.2.0", "official"),
        ("sonic", "1.3.0", "official"),
    ]
    unet = hash_file(two_versions[1] / "unet.safetensors").sha256
    (match,) = reg.lookup(unet)
    assert (match.model, match.version, match.role, match.training_step) == (
        "sonic",
        "1.3.0",
        "unet",
        80000,
    )
    assert reg.get("sonic", "1.2.0").release.release_id == "sonic@1.2.0#1"
    # Adding the same manifest again is a no-op; the serial was recorded in trust.json.
    assert reg.add(two_versions[1] / "release.dsse.json").added is False
    assert TrustStore.load(trust_file).serials["sonic@1.3.0"] == 1


def test_add_refuses_untrusted_and_rollback(
    tmp_path: Path,
    trust_file: Path,
    make_bundle: Callable[..., Path],
    make_key: Callable[..., Keys],
) -> None:
    reg = Registry(tmp_path / "reg", _trust(trust_file))
    stranger = make_bundle("x", key=make_key("stranger"))
    with pytest.raises(UnsignedReleaseError):
        reg.add(stranger / "release.dsse.json")
    assert not (tmp_path / "reg/releases/sonic").exists()

    old = make_bundle("s1", serial=1)
    new = make_bundle("s2", serial=2, step=80001)
    old_env = (old / "release.dsse.json").read_bytes()
    reg.add(new / "release.dsse.json", record_serial=False)
    with pytest.raises(RollbackError, match="expected >= 2"):
        reg.add(old_env, record_serial=False)
    other = make_bundle("s2b", serial=2, step=80002)
    with pytest.raises(RollbackError, match="already stored with another manifest"):
        reg.add(other / "release.dsse.json", record_serial=False)
    assert reg.get("sonic", "1.3.0").release.serial == 2


def test_rebuild_index_from_files_alone(
    tmp_path: Path, trust_file: Path, two_versions: list[Path]
) -> None:
    root = tmp_path / "reg"
    reg = Registry(root, _trust(trust_file))
    for b in two_versions:
        reg.add(b / "release.dsse.json", record_serial=False)
    reg.close()
    before = (root / LISTING_NAME).read_bytes()
    (root / INDEX_NAME).unlink()
    (root / LISTING_NAME).unlink()
    reg2 = Registry(root, _trust(trust_file))
    assert reg2.rebuild_index() == 3
    assert (root / LISTING_NAME).read_bytes() == before
    unet = hash_file(two_versions[0] / "unet.safetensors").sha256
    assert reg2.lookup(unet)[0].version == "1.2.0"


def test_tampered_index_cannot_vouch_for_unknown_bytes(
    tmp_path: Path, trust_file: Path, two_versions: list[Path]
) -> None:
    root = tmp_path / "reg"
    reg = Registry(root, _trust(trust_file))
    reg.add(two_versions[1] / "release.dsse.json", record_serial=False)
    reg.close()
    evil = "ab" * 32
    with sqlite3.connect(root / INDEX_NAME) as conn:
        conn.execute(
            "INSERT INTO files VALUES (?, 1, 'sonic', '1.3.0', 'unet', 'unet.safetensors')", (evil,)
        )
    assert Registry(root, _trust(trust_file)).lookup(evil) == ()


@pytest.mark.slow  # several processes
def test_concurrent_adds_from_several_processes(
    tmp_path: Path, trust_file: Path, make_bundle: Callable[..., Path]
) -> None:
    """8 `sonic-registry registry add` processes at once, each adding two releases."""
    bundles = [make_bundle(f"b{i}", version=f"1.{i}.0", step=1000 + i) for i in range(8)]
    root = tmp_path / "reg"
    cli = [sys.executable, "-c", "from sonic_registry.cli import main; main()"]
    procs = [
        subprocess.Popen(
            [
                *cli,
                "registry",
                "add",
                str(bundles[i]),
                str(bundles[(i + 1) % 8]),
                "--registry",
                str(root),
                "--trust",
                str(trust_file),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(8)
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()
    reg = Registry(root, _trust(trust_file))
    assert sorted(s.release.version for s in reg.releases()) == [f"1.{i}.0" for i in range(8)]
    with sqlite3.connect(root / INDEX_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        files_rows = conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    listing = json.loads((root / LISTING_NAME).read_text())
    assert len(listing["releases"]) == 8
    # Every serial was recorded in trust.json although 8 writers raced on it.
    assert dict(TrustStore.load(trust_file).serials) == {f"sonic@1.{i}.0": 1 for i in range(8)}
    assert reg.rebuild_index() == 8
    with sqlite3.connect(root / INDEX_NAME) as conn:
        assert conn.execute("SELECT COUNT(*) FROM files").fetchone()[0] == files_rows


# --- published registries ------------------------------------------------------------


@pytest.fixture
def published(tmp_path: Path, trust_file: Path, two_versions: list[Path]) -> Path:
    root = tmp_path / "reg"
    reg = Registry(root, _trust(trust_file))
    for b in two_versions:
        reg.add(b / "release.dsse.json", record_serial=False)
    reg.close()
    return root


@pytest.fixture
def http_url(published: Path) -> Iterator[str]:
    handler = partial(_QuietHandler, directory=str(published))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        # A client that stops reading (an oversized entry) resets the connection;
        # the server thread's traceback would land in CliRunner's captured stderr.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


def test_read_through_file_url(published: Path, trust_file: Path, two_versions: list[Path]) -> None:
    reg = Registry(published.as_uri(), _trust(trust_file))
    assert len(reg.releases()) == 3
    unet = hash_file(two_versions[2] / "unet.safetensors").sha256
    assert reg.lookup(unet)[0].channel == "community"


def test_read_through_http_server_without_trusting_it(
    published: Path,
    http_url: str,
    trust_file: Path,
    two_versions: list[Path],
    make_bundle: Callable[..., Path],
    make_key: Callable[..., Keys],
) -> None:
    reg = Registry(http_url, _trust(trust_file))
    unet = hash_file(two_versions[1] / "unet.safetensors").sha256
    assert reg.lookup(unet)[0].statement.release.release_id == "sonic@1.3.0#1"
    # The server swaps in a release signed by a key the client does not trust,
    # and lists it: the client skips it and says why.
    forged = make_bundle("forged", version="9.9.9", key=make_key("mallory"))
    target = published / "releases/sonic/9.9.9/1.dsse.json"
    target.parent.mkdir(parents=True)
    target.write_bytes((forged / "release.dsse.json").read_bytes())
    listing = json.loads((published / LISTING_NAME).read_text())
    listing["releases"].append({"path": "releases/sonic/9.9.9/1.dsse.json"})
    (published / LISTING_NAME).write_text(json.dumps(listing))
    reg2 = Registry(http_url, _trust(trust_file))
    assert {s.release.version for s in reg2.releases()} == {"1.0.0", "1.2.0", "1.3.0"}
    assert any("9.9.9" in p and "unknown key" in p for p in reg2.problems)
    forged_unet = hash_file(forged / "unet.safetensors").sha256
    assert reg2.lookup(forged_unet) == ()


def test_remote_registry_is_read_only(
    http_url: str, trust_file: Path, two_versions: list[Path]
) -> None:
    from sonic_registry.errors import UsageError

    reg = Registry(http_url, _trust(trust_file))
    with pytest.raises(UsageError, match="read-only"):
        reg.add(two_versions[0] / "release.dsse.json")


# --- command line ---------------------------------------------------------------------


def test_cli_registry_commands(tmp_path: Path, trust_file: Path, two_versions: list[Path]) -> None:
    runner = CliRunner()
    reg = str(tmp_path / "reg")
    common = ["--registry", reg, "--trust", str(trust_file)]
    out = runner.invoke(
        main, ["registry", "add", *[str(b / "release.dsse.json") for b in two_versions], *common]
    )
    assert out.exit_code == 0, out.output
    assert "added: sonic@1.3.0#1 (official)" in out.stdout
    out = runner.invoke(main, ["registry", "list", *common, "--json"])
    data = json.loads(out.stdout)
    assert [r["release_id"] for r in data["releases"]] == [
        "dice-talk@1.0.0#1",
        "sonic@1.2.0#1",
        "sonic@1.3.0#1",
    ]
    out = runner.invoke(main, ["registry", "show", "sonic", "1.2.0", *common])
    assert out.exit_code == 0 and "audio_encoder: audio2token.safetensors" in out.stdout
    assert "step 50000" in out.stdout
    out = runner.invoke(main, ["registry", "show", "sonic", "7.0", *common])
    assert out.exit_code == 2 and "no release sonic@7.0" in out.stderr
    out = runner.invoke(main, ["registry", "rebuild-index", *common])
    assert out.exit_code == 0 and "indexed 3 release(s)" in out.stdout
    out = runner.invoke(
        main, ["registry", "list", "--registry", str(tmp_path / "nope"), "--trust", str(trust_file)]
    )
    assert out.exit_code == 2 and "not a registry" in out.stderr


def test_in_memory_registry_from_envelopes(
    trust_file: Path,
    two_versions: list[Path],
    make_bundle: Callable[..., Path],
    make_key: Callable[..., Keys],
) -> None:
    reg = Registry.from_envelopes(
        [b / "release.dsse.json" for b in two_versions[:2]], _trust(trust_file)
    )
    unet = hash_file(two_versions[1] / "unet.safetensors").sha256
    assert reg.lookup(unet)[0].statement.release.release_id == "sonic@1.3.0#1"
    assert [s.release.version for s in reg.releases()] == ["1.2.0", "1.3.0"]
    stranger = make_bundle("x", version="2.0.0", key=make_key("stranger"))
    with pytest.raises(UnsignedReleaseError):
        Registry.from_envelopes([(stranger / "release.dsse.json").read_bytes()], _trust(trust_file))


def test_add_accepts_a_bundle_directory(
    tmp_path: Path, trust_file: Path, two_versions: list[Path]
) -> None:
    out = CliRunner().invoke(
        main,
        [
            "registry",
            "add",
            str(two_versions[0]),
            "--registry",
            str(tmp_path / "reg"),
            "--trust",
            str(trust_file),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "added: sonic@1.2.0#1" in out.stdout


def test_from_envelopes_skips_what_does_not_verify_only_when_asked(
    make_bundle, make_key, trust_file
) -> None:
    from sonic_registry.errors import UnsignedReleaseError
    from sonic_registry.registry import Registry
    from sonic_registry.trust import TrustStore

    good = make_bundle("good") / "release.dsse.json"
    stranger = make_bundle("stranger", key=make_key("stranger")) / "release.dsse.json"
    store = TrustStore.load(trust_file)
    with pytest.raises(UnsignedReleaseError):
        Registry.from_envelopes([good, stranger], store)
    with Registry.from_envelopes([good, stranger], store, skip_invalid=True) as reg:
        assert [s.release.release_id for s in reg.releases()] == ["sonic@1.3.0#1"]
        assert len(reg.problems) == 1
        assert reg.problems[0].startswith(f"{stranger}: skipped: ")
        assert "signed by unknown key" in reg.problems[0]


@pytest.mark.parametrize("corruption", ["not-a-database", "wrong-columns"])
def test_corrupt_index_is_rebuilt_from_the_envelopes(
    tmp_path: Path, trust_file: Path, two_versions: list[Path], corruption: str
) -> None:
    root = tmp_path / "reg"
    reg = Registry(root, _trust(trust_file))
    for b in two_versions[:2]:
        reg.add(b / "release.dsse.json", record_serial=False)
    reg.close()
    runner = CliRunner()
    common = ["--registry", str(root), "--trust", str(trust_file)]
    unet = two_versions[1] / "unet.safetensors"

    def corrupt() -> None:
        (root / INDEX_NAME).unlink()
        if corruption == "not-a-database":
            (root / INDEX_NAME).write_bytes(b"this is not an sqlite database\n" * 200)
        else:
            with sqlite3.connect(root / INDEX_NAME) as conn:
                conn.execute("CREATE TABLE releases (model TEXT, version TEXT)")
                conn.execute("CREATE TABLE files (name TEXT)")
            conn.close()

    corrupt()
    out = runner.invoke(main, ["registry", "list", *common, "--json"])
    assert out.exit_code == 0, out.output
    assert [r["release_id"] for r in json.loads(out.stdout)["releases"]] == [
        "sonic@1.2.0#1",
        "sonic@1.3.0#1",
    ]
    corrupt()
    out = runner.invoke(main, ["identify", str(unet), *common])
    assert out.exit_code == 0, out.output
    assert "sonic 1.3.0 unet" in out.stdout
    corrupt()
    out = runner.invoke(
        main, ["registry", "add", str(two_versions[2] / "release.dsse.json"), *common]
    )
    assert out.exit_code == 0, out.output
    corrupt()
    reg = Registry(root, _trust(trust_file))
    assert reg.lookup(hash_file(unet).sha256)[0].version == "1.3.0"
    assert len(reg.releases()) == 3
    with sqlite3.connect(root / INDEX_NAME) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()


def test_corrupt_index_that_cannot_be_rebuilt_is_one_line(
    tmp_path: Path, trust_file: Path, two_versions: list[Path]
) -> None:
    root = tmp_path / "reg"
    reg = Registry(root, _trust(trust_file))
    reg.add(two_versions[0] / "release.dsse.json", record_serial=False)
    reg.close()
    (root / INDEX_NAME).unlink()
    (root / INDEX_NAME).mkdir()  # sqlite cannot open it, and no file can replace it
    out = CliRunner().invoke(
        main, ["registry", "list", "--registry", str(root), "--trust", str(trust_file)]
    )
    assert out.exit_code == 2
    assert "index.sqlite is corrupt; run `sonic-registry registry rebuild-index`" in out.stderr
    assert "Traceback" not in out.output


# --- sources: no I/O in a constructor, statements handed over, plain HTTP warns -------


def test_opening_a_remote_registry_downloads_nothing(trust_file: Path) -> None:
    # Nothing listens on port 9: a constructor that downloaded would raise here.
    reg = Registry("http://127.0.0.1:9/reg/", _trust(trust_file))
    from sonic_registry.errors import UnreadableInputError

    with pytest.raises(UnreadableInputError, match="cannot download"):
        reg.releases()


def test_from_statements_reuses_verified_statements(
    trust_file: Path, two_versions: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sonic_registry.bundle import verify_envelope

    store = _trust(trust_file)
    statements = [verify_envelope(b / "release.dsse.json", store) for b in two_versions]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("an envelope was verified again")

    monkeypatch.setattr("sonic_registry.bundle.verify_envelope", refuse)
    with Registry.from_statements(statements, store) as reg:
        unet = hash_file(two_versions[1] / "unet.safetensors").sha256
        (match,) = reg.lookup(unet)
        assert match.statement is statements[1]
        assert reg.get("dice-talk", "1.0.0") is statements[2]
        assert len(reg.releases()) == 3


def test_plain_http_registry_warns_it_cannot_detect_withheld_releases(
    http_url: str, trust_file: Path
) -> None:
    out = CliRunner().invoke(
        main, ["registry", "list", "--registry", http_url, "--trust", str(trust_file)]
    )
    assert out.exit_code == 0, out.output
    assert "cannot detect a server that withholds a newer release" in out.stderr
    assert "sonic 1.3.0 serial 1" in out.stdout


# --- a plain remote: one bad entry costs one release, a slow server is bounded --------


class _TrickleHandler(_QuietHandler):
    """Serves the published files, but one envelope a byte at a time, slowly."""

    slow_suffix = "/1.2.0/1.dsse.json"

    def do_GET(self) -> None:
        if not self.path.endswith(self.slow_suffix):
            return super().do_GET()
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for _ in range(100000):  # never finishes within the test's deadline
            try:
                self.wfile.write(b"{")
                self.wfile.flush()
            except OSError:
                return
            threading.Event().wait(0.2)


@pytest.fixture
def bad_entries(published: Path) -> Path:
    """The listing names a missing envelope and an oversized one beside the good ones."""
    listing = json.loads((published / LISTING_NAME).read_text())
    listing["releases"].append({"path": "releases/sonic/7.0.0/1.dsse.json"})  # 404
    big = published / "releases/sonic/8.0.0/1.dsse.json"
    big.parent.mkdir(parents=True)
    big.write_bytes(b" " * (16 * 1024 * 1024 + 1))  # over MAX_DOWNLOAD_BYTES
    listing["releases"].append({"path": "releases/sonic/8.0.0/1.dsse.json"})
    (published / LISTING_NAME).write_text(json.dumps(listing))
    return published


def test_plain_remote_skips_a_missing_or_oversized_entry(
    bad_entries: Path, http_url: str, trust_file: Path
) -> None:
    out = CliRunner().invoke(
        main, ["registry", "list", "--registry", http_url, "--trust", str(trust_file)]
    )
    assert out.exit_code == 0, out.output
    assert "sonic 1.3.0 serial 1" in out.stdout and "sonic 1.2.0 serial 1" in out.stdout
    assert "7.0.0/1.dsse.json: skipped: cannot download: HTTP 404" in out.stderr
    assert "8.0.0/1.dsse.json: skipped: cannot download: larger than" in out.stderr
    assert "Traceback" not in out.output


def test_plain_remote_slow_entry_is_bounded_by_the_deadline(
    published: Path, trust_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    handler = partial(_TrickleHandler, directory=str(published))
    server = _QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("SONIC_REGISTRY_DOWNLOAD_DEADLINE", "1.5")
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        start = time.monotonic()
        out = CliRunner().invoke(
            main, ["registry", "list", "--registry", url, "--trust", str(trust_file)]
        )
        took = time.monotonic() - start
    finally:
        server.shutdown()
        server.server_close()
    assert out.exit_code == 0, out.output
    assert "1.2.0/1.dsse.json: skipped: cannot download: not complete within 1.5 s" in out.stderr
    assert "sonic 1.3.0 serial 1" in out.stdout and "sonic 1.2.0" not in out.stdout
    assert took < 10, f"a trickling server held registry list for {took:.1f} s"
