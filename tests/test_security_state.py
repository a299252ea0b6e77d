"""Nothing that failed to verify (or was accepted only as "unverified") changes stored state.

The attack: an envelope with no trusted signature and serial 999999, accepted
with ``--allow-unsigned``, used to raise the trust store's rollback floor, so the
genuine signed release then failed as a rollback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Keys

from sonic_registry.bundle import verify_bundle
from sonic_registry.cli import main
from sonic_registry.errors import SonicRegistryError
from sonic_registry.trust import TrustStore


def _strip_signatures(bundle: Path, signer: Keys | None = None) -> None:
    """Leave the signed payload as it is but drop (or replace) every signature."""
    env_path = bundle / "release.dsse.json"
    env = json.loads(env_path.read_text())
    env["signatures"] = []
    if signer is not None:  # signed, but by a key nobody trusts
        from sonic_registry.signing import Envelope

        signed = Envelope.from_json(json.dumps(env)).signed_by(signer.private)
        env = json.loads(signed.to_json())
    env_path.write_text(json.dumps(env))


@pytest.mark.parametrize("signature", ["none", "untrusted-key"])
def test_allow_unsigned_never_records_a_serial(
    make_bundle: Callable[..., Path],
    make_key: Callable[..., Keys],
    trust_file: Path,
    signature: str,
) -> None:
    forged = make_bundle("forged", serial=999999)
    _strip_signatures(forged, make_key("stranger") if signature == "untrusted-key" else None)
    before = trust_file.read_bytes()
    runner = CliRunner()
    res = runner.invoke(
        main, ["verify", str(forged), "--allow-unsigned", "--trust", str(trust_file)]
    )
    assert res.exit_code == 0, res.output
    assert "UNVERIFIED" in res.output
    assert trust_file.read_bytes() == before
    assert TrustStore.load(trust_file).serials == {}
    # The genuine release (serial 1) still verifies: no rollback floor was planted.
    genuine = make_bundle("genuine", serial=1)
    res = runner.invoke(main, ["verify", str(genuine), "--trust", str(trust_file)])
    assert res.exit_code == 0, res.output
    assert TrustStore.load(trust_file).serials == {"sonic@1.3.0": 1}


def test_library_allow_unsigned_leaves_the_store_alone(
    make_bundle: Callable[..., Path], trust_file: Path
) -> None:
    forged = make_bundle("forged", serial=999999)
    _strip_signatures(forged)
    verified = verify_bundle(forged, TrustStore.load(trust_file), allow_unsigned=True)
    assert verified.channel == "unverified"
    assert TrustStore.load(trust_file).serials == {}


def test_failed_verification_leaves_the_store_alone(
    make_bundle: Callable[..., Path], trust_file: Path
) -> None:
    bundle = make_bundle("tampered", serial=7)
    (bundle / "unet.safetensors").write_bytes(b"\0" * 16)
    before = trust_file.read_bytes()
    with pytest.raises(SonicRegistryError):
        verify_bundle(bundle, TrustStore.load(trust_file))
    assert trust_file.read_bytes() == before


def test_registry_add_refuses_unsigned_and_records_nothing(
    make_bundle: Callable[..., Path], trust_file: Path, tmp_path: Path
) -> None:
    forged = make_bundle("forged", serial=999999)
    _strip_signatures(forged)
    before = trust_file.read_bytes()
    reg = tmp_path / "reg"
    res = CliRunner().invoke(
        main,
        [
            "registry",
            "add",
            str(forged / "release.dsse.json"),
            "--registry",
            str(reg),
            "--trust",
            str(trust_file),
        ],
    )
    assert res.exit_code == 1, res.output
    assert trust_file.read_bytes() == before
    assert not (reg / "releases").exists()


def test_an_add_killed_before_its_listing_is_repaired_by_the_next_run(
    make_bundle: Callable[..., Path], trust_file: Path, tmp_path: Path
) -> None:
    """kill -9 between the index commit and the releases.json write, with a stray temp file."""
    import subprocess
    import sys

    from sonic_registry.registry import LISTING_NAME, Registry

    reg_dir = tmp_path / "reg"
    one, two = make_bundle("one", version="1.3.0"), make_bundle("two", version="1.4.0")
    Registry(reg_dir, TrustStore.load(trust_file)).add(one / "release.dsse.json")
    # A real SIGKILL inside the listing write: the index has the release, the
    # listing does not, and the temp file of the interrupted write stays behind.
    code = f"""
import os, signal
import sonic_registry.registry.local as local
from sonic_registry.registry import Registry
from sonic_registry.trust import TrustStore
real = local.atomic_write_bytes
def dying(path, data, **kw):
    if str(path).endswith("{LISTING_NAME}"):
        open(os.path.join(os.path.dirname(path), ".{LISTING_NAME}.x1y2.tmp"), "wb").write(data[:5])
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, data, **kw)
local.atomic_write_bytes = dying
store = TrustStore.load({str(trust_file)!r})
Registry({str(reg_dir)!r}, store).add({str(two / "release.dsse.json")!r})
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    listing = json.loads((reg_dir / LISTING_NAME).read_text())
    assert len(listing["releases"]) == 1  # one release behind
    assert list(reg_dir.glob(".*.tmp"))
    # The next run (any add, here a repeat of the interrupted one) repairs both.
    Registry(reg_dir, TrustStore.load(trust_file)).add(two / "release.dsse.json")
    listing = json.loads((reg_dir / LISTING_NAME).read_text())
    assert len(listing["releases"]) == 2
    assert not list(reg_dir.glob(".*.tmp"))
