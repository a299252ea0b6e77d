"""keygen / init / sign / verify / trust through the real ``sonic-registry`` executable.

Subprocesses with stdin not a terminal: nothing may block on a prompt, every
failure is one line with the documented exit code, never a traceback.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import weight_bytes, write_safetensors

EXE = str(Path(sys.executable).with_name("sonic-registry"))


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60):
    proc = subprocess.run(
        [EXE, *map(str, args)],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "checkpoints" / "Sonic"
    write_safetensors(root / "audio2token.safetensors", {"w": weight_bytes("enc")})
    write_safetensors(root / "audio2bucket.safetensors", {"w": weight_bytes("dec")})
    write_safetensors(root / "unet.safetensors", {"w": weight_bytes("unet", 4096)})
    return root


def test_init_on_dotted_file_names_writes_a_quoted_table_that_signs(tmp_path: Path) -> None:
    """``sonic.v2.safetensors`` gives the role ``sonic.v2``: its table must be quoted."""
    import tomllib

    from sonic_registry.bundle import sign_bundle, verify_bundle
    from sonic_registry.signing import generate_key

    root = tmp_path / "dotted"
    write_safetensors(root / "sonic.v2.safetensors", {"w": weight_bytes("dotted")})
    write_safetensors(root / "audio2token.safetensors", {"w": weight_bytes("enc")})
    r = run("init", root, "--version", "2.0.0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (root / "release.toml").read_text()
    assert '[components."sonic.v2"]' in text
    components = tomllib.loads(text)["components"]
    assert components["sonic.v2"]["path"] == "sonic.v2.safetensors"
    assert components["sonic.v2"]["format"] == "safetensors"
    key = generate_key("ed25519")
    sign_bundle(root, key)
    verified = verify_bundle(root, public_keys=[key.public])
    assert sorted(verified.release.components) == ["audio_encoder", "sonic.v2"]


def test_full_session_keygen_init_sign_verify_tamper(tmp_path: Path, model_dir: Path) -> None:
    r = run("keygen", "release-key", "--no-passphrase", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    key = tmp_path / "release-key.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "release-key.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")

    r = run("init", model_dir, "--version", "1.3.0", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    toml = (model_dir / "release.toml").read_text()
    assert "[components.audio_encoder]" in toml and "[components.motion_decoder]" in toml
    assert "[params.inference_steps]" in toml
    again = run("init", model_dir, cwd=tmp_path)
    assert again.returncode == 2
    assert again.stderr.strip() == (
        f"error: {model_dir / 'release.toml'}: already exists; refusing to overwrite it"
    )

    r = run("sign", model_dir, "--key", key, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (model_dir / "release.dsse.json").exists()

    r = run("verify", model_dir, "--public-key", "release-key.pub", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "verified sonic 1.3.0 (serial 1): official"

    r = run("verify", model_dir, "--public-key", "release-key.pub", "--json", cwd=tmp_path)
    verdict = json.loads(r.stdout)
    assert verdict["ok"] is True and verdict["release_id"] == "sonic@1.3.0#1"
    assert verdict["channel"] == "official" and verdict["files"] == 4

    data = bytearray((model_dir / "unet.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (model_dir / "unet.safetensors").write_bytes(bytes(data))
    r = run("verify", model_dir, "--public-key", "release-key.pub", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.startswith("error: unet.safetensors: sha256: expected ")
    assert len(r.stderr.strip().splitlines()) == 1

    r = run("verify", model_dir, "--public-key", "release-key.pub", "--json", cwd=tmp_path)
    assert r.returncode == 1
    verdict = json.loads(r.stdout)
    assert verdict["ok"] is False and verdict["exit_code"] == 1
    assert verdict["errors"][0]["error"] == "DigestMismatchError"
    assert verdict["errors"][0]["where"] == "unet.safetensors"


def test_keygen_never_blocks_without_a_terminal(tmp_path: Path) -> None:
    r = run("keygen", "k", cwd=tmp_path, timeout=20)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: --passphrase-env: stdin is not a terminal: "
        "give --passphrase-env VAR or --no-passphrase"
    )
    assert not (tmp_path / "k.key").exists()


def test_passphrase_from_environment(tmp_path: Path, model_dir: Path) -> None:
    env = {"SONIC_PASS": "correct horse"}
    r = run(
        "keygen",
        "k",
        "--algorithm",
        "ecdsa-p256",
        "--passphrase-env",
        "SONIC_PASS",
        cwd=tmp_path,
        env=env,
    )
    assert r.returncode == 0, r.stderr
    assert b"ENCRYPTED" in (tmp_path / "k.key").read_bytes()
    run("init", model_dir, cwd=tmp_path)
    r = run("sign", model_dir, "--key", "k.key", cwd=tmp_path, timeout=20)
    assert r.returncode == 2
    assert "the key is encrypted and stdin is not a terminal: give --passphrase-env VAR" in r.stderr
    r = run(
        "sign",
        model_dir,
        "--key",
        "k.key",
        "--passphrase-env",
        "SONIC_PASS",
        cwd=tmp_path,
        env={"SONIC_PASS": "wrong"},
    )
    assert r.returncode == 2
    assert r.stderr.strip() == "error: k.key: wrong passphrase"
    r = run(
        "sign", model_dir, "--key", "k.key", "--passphrase-env", "SONIC_PASS", cwd=tmp_path, env=env
    )
    assert r.returncode == 0, r.stderr
    r = run("sign", model_dir, "--key", "k.key", "--passphrase-env", "UNSET_VAR", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: --passphrase-env: environment variable UNSET_VAR is not set"


def test_trust_store_commands_and_community_label(tmp_path: Path, model_dir: Path) -> None:
    for name in ("off", "comm"):
        assert run("keygen", name, "--no-passphrase", cwd=tmp_path).returncode == 0
    assert run("trust", "init", cwd=tmp_path).returncode == 0
    r = run("trust", "add-key", "off.pub", "--role", "official", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run("trust", "add-key", "comm.pub", "--role", "community", "--name", "alice", cwd=tmp_path)
    assert r.returncode == 0, r.stderr

    toml_text = None
    run("init", model_dir, cwd=tmp_path)
    toml_text = (model_dir / "release.toml").read_text()
    (model_dir / "release.toml").write_text(
        toml_text.replace('channel = "official"', 'channel = "community"')
    )
    assert run("sign", model_dir, "--key", "comm.key", cwd=tmp_path).returncode == 0
    r = run("verify", model_dir, "--trust", "trust.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "verified sonic 0.1.0 (serial 1): community (non-official)"
    assert "signed by: alice" in r.stdout

    shown = json.loads(run("trust", "show", "--json", cwd=tmp_path).stdout)
    assert shown["serials"] == {"sonic@0.1.0": 1}
    comm_id = next(k for k, v in shown["keys"].items() if v["name"] == "alice")

    r = run("trust", "revoke", comm_id[:12], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run("verify", model_dir, "--trust", "trust.json", cwd=tmp_path)
    assert r.returncode == 1
    assert f"signed by revoked key {comm_id[:16]}" in r.stderr
    table = run("trust", "show", cwd=tmp_path).stdout
    assert "revoked" in table and "alice" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("verify", "nowhere", "--public-key", "x.pub"),
            "error: nowhere: expected a model directory",
        ),
        (
            ("verify", ".", "--public-key", "bad.pub"),
            "error: bad.pub: expected a PEM public key, found unparseable data",
        ),
        (
            ("verify", "."),
            "error: no trusted keys: give --trust trust.json or --public-key KEY.pub",
        ),
        (("sign", ".", "--key", "missing.key"), "error: missing.key: no such key file"),
        (("trust", "show", "--trust", "missing.json"), "error: missing.json: no such file"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args, message: str) -> None:
    from sonic_registry.signing import generate_key

    (tmp_path / "x.pub").write_text(generate_key().public.to_pem())
    (tmp_path / "bad.pub").write_text("not a key")
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == message


def test_unknown_option_is_a_usage_error(tmp_path: Path) -> None:
    r = run("verify", "--frobnicate", cwd=tmp_path)
    assert r.returncode == 2
    assert "No such option '--frobnicate'" in r.stderr


def test_help_and_import_do_not_load_heavy_modules(tmp_path: Path) -> None:
    code = (
        "import sys, sonic_registry, sonic_registry.cli\n"
        "from click.testing import CliRunner\n"
        "r = CliRunner().invoke(sonic_registry.cli.main, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "for sub in ('verify', 'sign', 'keygen', 'trust'):\n"
        "    assert sub in r.output, sub\n"
        "print(sorted(m for m in ('torch', 'numpy', 'jsonschema') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_unexpected_bug_is_still_one_line_and_exit_2(
    tmp_path: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    import sonic_registry.bundle
    from sonic_registry.cli import main
    from sonic_registry.signing import generate_key

    (tmp_path / "k.pub").write_text(generate_key().public.to_pem())

    def broken(*args: object, **kwargs: object) -> None:
        raise TypeError("boom")

    monkeypatch.setattr(sonic_registry.bundle, "verify_bundle", broken)
    args = ["verify", str(model_dir), "--public-key", str(tmp_path / "k.pub")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: internal error (TypeError: boom); "
        "rerun with SONIC_REGISTRY_DEBUG=1 for the traceback"
    )
    monkeypatch.setenv("SONIC_REGISTRY_DEBUG", "1")
    assert isinstance(CliRunner().invoke(main, args).exception, TypeError)
