"""A registry published as a TUF repository and read by a fresh client with only root.json.

The end-to-end test serves the published directory with the standard
library's plain static server (``python -m http.server``) in a subprocess.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sonic_install import WORKFLOWS, install, sonic_release

from sonic_registry.cli import main
from sonic_registry.digest import hash_file

EXAMPLE = WORKFLOWS / "smthemex-ComfyUI_Sonic" / "example.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def static_server(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """``python -m http.server`` over tmp_path/site (127.0.0.1 only)."""
    site = tmp_path / "site"
    site.mkdir()
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=site,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield site, f"http://127.0.0.1:{port}/"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "user-cache"
    monkeypatch.setenv("SONIC_REGISTRY_CACHE", str(path))
    return path


def _run(args: list[str]) -> tuple[int, str, str]:
    out = CliRunner().invoke(main, args)
    return out.exit_code, out.stdout, out.stderr


def test_published_registry_read_by_fresh_client_with_only_root_json(
    tmp_path: Path,
    static_server: tuple[Path, str],
    cache: Path,
    trust_file: Path,
    make_bundle: Callable[..., Path],
) -> None:
    site, url = static_server
    reg = site / "reg"
    keys = tmp_path / "registry-keys"
    v12 = make_bundle("v12", version="1.2.0", step=50000)
    v13 = make_bundle("v13", version="1.3.0", step=80000)
    trust = ["--trust", str(trust_file)]
    # The documented commands: add a release, init (keys + TUF metadata), add with
    # the online key (published at once).
    code, _, err = _run(["registry", "add", str(v12), "--registry", str(reg), *trust])
    assert code == 0, err
    code, out, err = _run(["registry", "init", "--registry", str(reg), "--keys-dir", str(keys)])
    assert code == 0, err
    assert "published: 1 release(s)" in out
    assert (keys / "registry-root.pem").stat().st_mode & 0o777 == 0o600
    code, out, err = _run(
        ["registry", "add", str(v13), "--registry", str(reg), *trust,
         "--online-key", str(keys / "registry-online.pem")]
    )  # fmt: skip
    assert code == 0, err
    assert "published: 2 release(s)" in out
    # A fresh client holds only root.json (copied out of band) and its trust store.
    root_json = tmp_path / "pinned-root.json"
    root_json.write_bytes((reg / "metadata" / "root.json").read_bytes())
    remote = ["--registry", f"{url}reg/", *trust]
    code, out, err = _run(["registry", "list", *remote, "--registry-root", str(root_json)])
    assert code == 0, err
    assert "sonic 1.2.0 serial 1 official" in out and "sonic 1.3.0 serial 1 official" in out
    assert "cannot detect" not in err  # read through TUF, not the unsigned listing
    # The root is now cached: later commands need only the URL.
    unet = v13 / "unet.safetensors"
    code, out, err = _run(["identify", str(unet), *remote, "--json"])
    assert code == 0, err
    (found,) = json.loads(out)["files"]
    assert [m["release_id"] for m in found["matches"]] == ["sonic@1.3.0#1"]
    code, out, err = _run(["registry", "show", "sonic", "1.2.0", *remote])
    assert code == 0 and "step 50000" in out, err
    assert found["sha256"] == hash_file(unet).sha256


def test_add_without_online_key_says_the_release_is_not_yet_published(
    tmp_path: Path, trust_file: Path, make_bundle: Callable[..., Path]
) -> None:
    reg = tmp_path / "reg"
    code, _, err = _run(
        ["registry", "init", "--registry", str(reg), "--keys-dir", str(tmp_path / "k")]
    )
    assert code == 0, err
    code, _, err = _run(
        ["registry", "add", str(make_bundle("v13")), "--registry", str(reg),
         "--trust", str(trust_file)]
    )  # fmt: skip
    assert code == 0
    assert "not yet published to TUF clients" in err
    code, _, err = _run(
        ["registry", "init", "--registry", str(reg), "--keys-dir", str(tmp_path / "k")]
    )
    assert code == 2 and "already" in err


def test_tuf_registry_read_through_a_file_url(
    tmp_path: Path, cache: Path, trust_file: Path, make_bundle: Callable[..., Path]
) -> None:
    reg = tmp_path / "reg"
    code, _, err = _run(["registry", "init", "--registry", str(reg), "--keys-dir", str(tmp_path)])
    assert code == 0, err
    online = ["--online-key", str(tmp_path / "registry-online.pem")]
    bundle = make_bundle("v13", version="1.3.0")
    code, _, err = _run(
        ["registry", "add", str(bundle), "--registry", str(reg), "--trust", str(trust_file),
         *online]
    )  # fmt: skip
    assert code == 0, err
    code, out, err = _run(
        ["registry", "list", "--registry", reg.as_uri(), "--trust", str(trust_file),
         "--registry-root", str(reg / "metadata/root.json"), "--json"]
    )  # fmt: skip
    assert code == 0, err
    assert [r["release_id"] for r in json.loads(out)["releases"]] == ["sonic@1.3.0#1"]
    assert (cache / "registries").is_dir()  # read through TUF, into the user cache


@pytest.fixture
def published_v13(
    tmp_path: Path, trust_file: Path, make_bundle: Callable[..., Path]
) -> tuple[Path, Path, Path]:
    """A TUF-published registry (tmp/reg) holding a Sonic 1.3.0 release, and that
    release installed as a ComfyUI models folder: (registry, bundle, models)."""
    reg = tmp_path / "reg"
    code, _, err = _run(["registry", "init", "--registry", str(reg), "--keys-dir", str(tmp_path)])
    assert code == 0, err
    v13 = sonic_release(make_bundle, "v13", version="1.3.0", step=80000)
    code, _, err = _run(
        ["registry", "add", str(v13), "--registry", str(reg), "--trust", str(trust_file),
         "--online-key", str(tmp_path / "registry-online.pem")]
    )  # fmt: skip
    assert code == 0, err
    return reg, v13, install(v13, tmp_path / "models")


def _pin(how: str, reg: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The registry's root.json given as ``--registry-root`` or in SONIC_REGISTRY_ROOT."""
    root = str(reg / "metadata/root.json")
    if how == "env":
        monkeypatch.setenv("SONIC_REGISTRY_ROOT", root)
        return []
    return ["--registry-root", root]


@pytest.mark.parametrize("command", ["identify", "resolve", "doctor", "check-params"])
@pytest.mark.parametrize("how", ["option", "env"])
def test_every_reading_command_bootstraps_a_tuf_client(
    command: str,
    how: str,
    published_v13: tuple[Path, Path, Path],
    cache: Path,
    trust_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--registry-root FILE (default: env SONIC_REGISTRY_ROOT) is one option that the
    registry commands, identify, resolve, doctor and check-params share."""
    reg, v13, models = published_v13
    args = {
        "identify": [str(v13 / "unet.pth")],
        "resolve": [str(EXAMPLE), "--models-dir", str(models)],
        "doctor": [str(models)],
        "check-params": ["sonic", "1.3.0", "--set", "inference_steps=25"],
    }[command]
    remote = ["--registry", reg.as_uri(), "--trust", str(trust_file)]
    code, out, err = _run([command, *args, *remote, *_pin(how, reg, monkeypatch)])
    assert code == 0, out + err
    assert "sonic 1.3.0" in out or "sonic@1.3.0" in out, out
    # A file:// registry is read through TUF only when a root is pinned: into the cache.
    assert (cache / "registries").is_dir()


@pytest.mark.parametrize("how", ["option", "env"])
def test_workflows_hook_bootstraps_a_tuf_client(
    how: str,
    published_v13: tuple[Path, Path, Path],
    tmp_path: Path,
    cache: Path,
    trust_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The workflows pre-commit hook takes the same --registry-root (env SONIC_REGISTRY_ROOT)."""
    from sonic_registry.precommit import main as hook

    reg, _, models = published_v13
    args = ["workflows", "--registry", reg.as_uri(), "--trust", str(trust_file),
            *_pin(how, reg, monkeypatch), "--models-dir", str(models),
            "--cache-dir", str(tmp_path / "hook-cache"), str(EXAMPLE)]  # fmt: skip
    assert hook(args) == 0
    assert (cache / "registries").is_dir()  # read through TUF, into the user cache


def test_bad_trust_input_stops_the_refresh_started_beside_it(
    tmp_path: Path, cache: Path, make_bundle: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refresh requests start before the trust store loads; unreadable trust input ends
    the command (exit 2) and closes them rather than leaving them to finish."""
    from sonic_registry.registry import tuf_sync

    reg = tmp_path / "reg"
    code, _, err = _run(["registry", "init", "--registry", str(reg), "--keys-dir", str(tmp_path)])
    assert code == 0, err
    closed: list[object] = []
    real_close = tuf_sync.Prefetch.close

    def close(self: tuf_sync.Prefetch) -> None:
        closed.append(self)
        real_close(self)

    monkeypatch.setattr(tuf_sync.Prefetch, "close", close)
    code, _, err = _run(
        ["identify", str(make_bundle("v13") / "unet.pth"), "--registry", reg.as_uri(),
         "--registry-root", str(reg / "metadata/root.json"),
         "--trust", str(tmp_path / "no-such-trust.json")]
    )  # fmt: skip
    assert code == 2 and "no-such-trust.json" in err
    assert len(closed) == 1


def test_publish_refuses_an_envelope_changed_since_it_was_indexed(
    tmp_path: Path, trust_file: Path, make_bundle: Callable[..., Path]
) -> None:
    """The pack must hold the very bytes its targets entry hashes: an envelope edited on disk
    is one clear error (exit 2 material), and nothing is re-signed."""
    from sonic_registry.errors import UnreadableInputError
    from sonic_registry.registry.tuf_repo import publish
    from sonic_registry.signing import load_private_key

    reg = tmp_path / "reg"
    code, _, err = _run(["registry", "init", "--registry", str(reg), "--keys-dir", str(tmp_path)])
    assert code == 0, err
    online = tmp_path / "registry-online.pem"
    code, _, err = _run(
        ["registry", "add", str(make_bundle("v13")), "--registry", str(reg),
         "--trust", str(trust_file), "--online-key", str(online)]
    )  # fmt: skip
    assert code == 0, err
    (envelope,) = (reg / "releases").rglob("*.dsse.json")
    envelope.write_bytes(envelope.read_bytes() + b" ")
    timestamp = (reg / "metadata" / "timestamp.json").read_bytes()
    with pytest.raises(UnreadableInputError, match="changed since it was indexed"):
        publish(reg, load_private_key(online), force=True)
    assert (reg / "metadata" / "timestamp.json").read_bytes() == timestamp
