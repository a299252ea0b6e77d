"""What a new user runs first: pipes into ``head``, ``--json`` usage errors, ``--version``.

Everything goes through the real ``sonic-registry`` executable in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Keys
from test_cli_foundation import EXE, run

from sonic_registry.signing import PublicKey, generate_key
from sonic_registry.trust import TrustStore


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


# -- the trust store ------------------------------------------------------------------------


def _store(tmp_path: Path) -> dict[str, object]:
    doc: dict[str, object] = json.loads((tmp_path / "trust.json").read_text())
    return doc


def test_add_key_again_with_another_role_adds_the_role(
    tmp_path: Path, make_key: Callable[..., Keys]
) -> None:
    k = make_key("release")
    assert run("trust", "init", cwd=tmp_path).returncode == 0
    assert run("trust", "add-key", k.pub_path, "--role", "official", cwd=tmp_path).returncode == 0
    again = run("trust", "add-key", k.pub_path, "--role", "community", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == (
        f"trusted {k.keyid[:16]} (release) for community, official (added community)"
    )
    assert TrustStore.load(tmp_path / "trust.json").keys[k.keyid].roles == (
        "community",
        "official",
    )
    same = run("trust", "add-key", k.pub_path, "--role", "official", "--json", cwd=tmp_path)
    doc = json.loads(same.stdout)
    assert doc["roles"] == ["community", "official"] and doc["added_roles"] == []


def test_past_expiry_is_refused(tmp_path: Path, make_key: Callable[..., Keys]) -> None:
    k = make_key("release")
    run("trust", "init", cwd=tmp_path)
    r = run("trust", "add-key", k.pub_path, "--expires", "2020-01-01T00:00:00Z", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.startswith(
        "error: --expires: expected a future time, found 2020-01-01T00:00:00Z, already past"
    )
    assert _store(tmp_path)["keys"] == {}  # nothing written
    future = run("trust", "add-key", k.pub_path, "--expires", "2099-01-01T00:00:00Z", cwd=tmp_path)
    assert future.returncode == 0, future.stderr


def _two_keys_sharing_four_digits() -> tuple[PublicKey, PublicKey]:
    """Generate keys until two keyids share their first 4 hex digits (~300 keys)."""
    seen: dict[str, PublicKey] = {}
    while True:
        pub = generate_key("ed25519").public
        other = seen.setdefault(pub.keyid[:4], pub)
        if other is not pub:
            return other, pub


def test_revoke_takes_any_unique_prefix_of_four_and_says_why_not(
    tmp_path: Path, make_key: Callable[..., Keys]
) -> None:
    a, b = _two_keys_sharing_four_digits()
    k = make_key("release").private.public
    TrustStore().with_key(a, ["official"]).with_key(b, ["official"]).with_key(k, ["official"]).save(
        tmp_path / "trust.json"
    )
    shared = a.keyid[:4]

    short = run("trust", "revoke", k.keyid[:3], cwd=tmp_path)
    assert short.returncode == 2
    assert short.stderr.strip() == (
        f"error: keyid: prefix '{k.keyid[:3]}' is too short: give at least 4 hex digits"
    )
    amb = run("trust", "revoke", shared, cwd=tmp_path)
    assert amb.returncode == 2
    first, second = sorted([a.keyid, b.keyid])
    assert amb.stderr.strip() == (
        f"error: keyid: prefix '{shared}' is ambiguous: it matches {first[:16]}, "
        f"{second[:16]}; give more digits"
    )
    bad = run("trust", "revoke", "xyz12", cwd=tmp_path)
    assert bad.returncode == 2 and "expected hex digits of a keyid, found 'xyz12'" in bad.stderr
    ids = [a.keyid, b.keyid, k.keyid]
    unknown = next(
        p for p in (f"{n:04x}" for n in range(1 << 16)) if not any(i.startswith(p) for i in ids)
    )
    none = run("trust", "revoke", unknown, cwd=tmp_path)
    assert none.returncode == 2 and f"no trusted key starts with '{unknown}'" in none.stderr
    assert TrustStore.load(tmp_path / "trust.json").revoked == frozenset()  # nothing written

    # 4 digits of a key no other shares them with (upper case is fine): revoked.
    four = k.keyid[:4] if k.keyid[:4] != shared else k.keyid[:5]
    ok = run("trust", "revoke", four.upper(), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"revoked {k.keyid}"
    # a longer prefix settles the ambiguity
    longer = run("trust", "revoke", a.keyid[:20], "--json", cwd=tmp_path)
    assert json.loads(longer.stdout)["revoked"] == a.keyid
    assert TrustStore.load(tmp_path / "trust.json").revoked == {k.keyid, a.keyid}


def test_a_link_out_of_the_bundle_is_reported_once(
    tmp_path: Path, make_bundle: Callable[..., Path], official_key: Keys
) -> None:
    root = make_bundle()
    outside = tmp_path / "elsewhere.safetensors"
    os.replace(root / "unet.safetensors", outside)
    (root / "unet.safetensors").symlink_to(outside)
    r = run("verify", root, "--public-key", official_key.pub_path, "--no-record", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"error: unet.safetensors: expected a path inside the bundle, found a link to {outside}"
    ]


def test_every_writer_refuses_to_overwrite_without_force(
    tmp_path: Path, make_bundle: Callable[..., Path]
) -> None:
    """keygen, export-oms and convert: one policy, one line, --force replaces."""
    assert (
        run("keygen", "k", "--algorithm", "ecdsa-p256", "--no-passphrase", cwd=tmp_path).returncode
        == 0
    )
    again = run("keygen", "k", "--algorithm", "ecdsa-p256", "--no-passphrase", cwd=tmp_path)
    assert again.returncode == 2
    assert (
        again.stderr.strip()
        == "error: k.key: already exists; refusing to overwrite it (use --force)"
    )

    root = make_bundle()
    sig = tmp_path / "model.sig"
    export = ("export-oms", root, "--key", "k.key", "--out", sig)
    first = run(*export, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = sig.read_bytes()
    sig.write_bytes(b"a signature someone else made")
    second = run(*export, cwd=tmp_path)
    assert second.returncode == 2
    assert second.stderr.strip() == (
        f"error: {sig}: already exists; refusing to overwrite it (use --force)"
    )
    assert sig.read_bytes() == b"a signature someone else made"  # untouched
    forced = run(*export, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert json.loads(sig.read_bytes())["mediaType"] == json.loads(before)["mediaType"]

    (tmp_path / "in.pth").write_bytes(b"\x80\x04N.")  # a pickle of None
    (tmp_path / "out.safetensors").write_bytes(b"keep")
    conv = run("convert", "in.pth", "out.safetensors", cwd=tmp_path)
    assert conv.returncode == 2
    assert conv.stderr.strip() == (
        "error: out.safetensors: already exists; refusing to overwrite it (use --force)"
    )
    assert (tmp_path / "out.safetensors").read_bytes() == b"keep"


def test_a_changed_byte_is_worded_alike_by_verify_oms_and_the_loader(
    tmp_path: Path, make_bundle: Callable[..., Path], make_key: Callable[..., Keys]
) -> None:
    """verify, verify --oms and the runtime loader: one digest-mismatch line."""
    from sonic_registry.bundle import sign_bundle, verify_bundle
    from sonic_registry.errors import DigestMismatchError
    from sonic_registry.interop.oms import export_oms, verify_oms
    from sonic_registry.loader import load_verified

    key = make_key("ec", algorithm="ecdsa-p256")
    root = make_bundle(sign=False)
    sign_bundle(root, key.private)
    export_oms(root, key.private, tmp_path / "model.sig")
    keys = [key.private.public]
    deferred = verify_bundle(root, public_keys=keys, hash_on_load=("unet",), record_serial=False)
    unet = root / "unet.safetensors"
    data = bytearray(unet.read_bytes())
    data[200] ^= 1
    unet.write_bytes(bytes(data))

    details = []
    with pytest.raises(DigestMismatchError) as by_verify:
        verify_bundle(root, public_keys=keys)
    details.append(by_verify.value.detail)
    with pytest.raises(DigestMismatchError) as by_oms:
        verify_oms(root, tmp_path / "model.sig", key.private.public)
    details.append(by_oms.value.detail)
    with pytest.raises(DigestMismatchError) as by_loader:
        load_verified(unet, deferred, "unet")
    details.append(by_loader.value.detail)
    assert len(set(details)) == 1, details
    assert re.fullmatch(
        r"sha256: expected [0-9a-f]{16}\.\.\., found [0-9a-f]{16}\.\.\.", details[0]
    )
    cli = run(
        "verify", root, "--oms", tmp_path / "model.sig", "--public-key", key.pub_path, cwd=tmp_path
    )
    assert cli.returncode == 1
    assert cli.stderr.strip() == f"error: unet.safetensors: {details[0]}"
