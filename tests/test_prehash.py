"""Hashing that starts before the signatures are checked changes no verdict.

``verify`` starts hashing the files the envelope lists while it loads the
signature code and checks the signatures (``sonic_registry.prehash``). These
tests pin what makes that safe: a digest is used only for the very file
``verify`` then finds (same real path, shard size and stat), it is compared
with the signed digest like any other, nothing outside the bundle is read, and
a failed signature stops the hashing.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import Keys

import sonic_registry.filecheck as filecheck_mod
from sonic_registry.bundle import sign_bundle, verify_bundle
from sonic_registry.errors import (
    DigestMismatchError,
    SonicRegistryError,
    UnsignedReleaseError,
    VerificationError,
)
from sonic_registry.prehash import start_prehash
from sonic_registry.trust import TrustStore


@pytest.fixture
def sharded(make_bundle: Callable[..., Path], official_key: Keys) -> Path:
    """A bundle whose files are signed in 256-byte shards (several shards per file)."""
    root = make_bundle(sign=False)
    sign_bundle(root, official_key.private, shard_size=256)
    return root


def _hashed_by_verify(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every file verify itself hashes (beyond what the prehash did)."""
    seen: list[str] = []
    real = filecheck_mod.sharded_digests

    def spy(paths, **kwargs):  # type: ignore[no-untyped-def]
        seen.extend(os.path.basename(str(p)) for p in paths)
        return real(paths, **kwargs)

    monkeypatch.setattr(filecheck_mod, "sharded_digests", spy)
    return seen


def test_prehashed_digests_are_used_and_verdict_unchanged(
    sharded: Path, official_key: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    pre = start_prehash(sharded)
    assert pre is not None
    hashed = _hashed_by_verify(monkeypatch)
    verified = verify_bundle(
        sharded, public_keys=[official_key.private.public], prehash=pre, record_serial=False
    )
    assert verified.channel == "official"
    assert hashed == []  # every listed file came from the prehash


def test_a_tampered_file_is_refused_with_or_without_prehash(
    sharded: Path, official_key: Keys
) -> None:
    unet = sharded / "unet.safetensors"
    data = bytearray(unet.read_bytes())
    data[600] ^= 1  # same size, third shard
    unet.write_bytes(bytes(data))
    messages = []
    for pre in (start_prehash(sharded), None):
        with pytest.raises(DigestMismatchError) as info:
            verify_bundle(sharded, public_keys=[official_key.private.public], prehash=pre)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    assert messages[0].startswith("unet.safetensors: sha256: content differs")


def test_a_file_replaced_after_prehashing_is_hashed_again(
    sharded: Path, official_key: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    pre = start_prehash(sharded)
    assert pre is not None
    pre.take("", 0, os.stat(sharded))  # wait until the prehash is done
    unet = sharded / "unet.safetensors"
    data = bytearray(unet.read_bytes())
    data[100] ^= 1
    tmp = unet.with_name("swap")
    tmp.write_bytes(bytes(data))
    os.replace(tmp, unet)  # a new inode: the digest computed before no longer counts
    hashed = _hashed_by_verify(monkeypatch)
    with pytest.raises(DigestMismatchError, match=r"unet\.safetensors: sha256: content differs"):
        verify_bundle(sharded, public_keys=[official_key.private.public], prehash=pre)
    assert hashed == ["unet.safetensors"]


def test_nothing_outside_the_bundle_is_prehashed(
    make_bundle: Callable[..., Path], official_key: Keys, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.safetensors"
    root = make_bundle()
    os.replace(root / "unet.safetensors", outside)  # same bytes, now outside the bundle
    (root / "unet.safetensors").symlink_to(outside)
    pre = start_prehash(root)
    assert pre is not None
    assert not pre.covers(str(outside), 0, os.stat(outside))
    assert all(os.path.dirname(job[0]) == os.path.realpath(root) for job in pre._jobs)
    with pytest.raises(VerificationError) as info:
        verify_bundle(root, public_keys=[official_key.private.public], prehash=pre)
    lines = [str(p) for p in info.value.problems]
    assert lines == [
        f"unet.safetensors: expected a path inside the bundle, found a link to {outside}"
    ]


def test_failed_signatures_cancel_the_hashing(sharded: Path, make_key: Callable[..., Keys]) -> None:
    stranger = make_key("stranger").private.public
    pre = start_prehash(sharded)
    assert pre is not None
    with pytest.raises(UnsignedReleaseError, match="signed by unknown key"):
        verify_bundle(sharded, TrustStore().with_pinned([stranger]), prehash=pre)
    assert pre.cancelled  # cancelled, not merely joined (join alone ends the threads too)


def test_no_envelope_or_an_unreadable_one_prehashes_nothing(
    make_bundle: Callable[..., Path],
) -> None:
    root = make_bundle(sign=False)
    assert start_prehash(root) is None
    (root / "release.dsse.json").write_text('{"payload": "not base64!"}')
    assert start_prehash(root) is None


def test_a_fifo_envelope_does_not_block(make_bundle: Callable[..., Path]) -> None:
    root = make_bundle(sign=False)
    os.mkfifo(root / "release.dsse.json")
    assert start_prehash(root) is None  # returns at once; verify reports the FIFO


def test_a_url_safe_unpadded_payload_is_prehashed(sharded: Path, official_key: Keys) -> None:
    """DSSE allows either base64 alphabet, padded or not: the prehash reads what verify reads."""
    env = sharded / "release.dsse.json"
    doc = json.loads(env.read_text())
    payload = base64.b64decode(doc["payload"])
    doc["payload"] = base64.urlsafe_b64encode(payload).decode("ascii").rstrip("=")
    env.write_text(json.dumps(doc))
    pre = start_prehash(sharded)
    assert pre is not None
    verified = verify_bundle(
        sharded, public_keys=[official_key.private.public], prehash=pre, record_serial=False
    )
    assert verified.channel == "official"


def test_blake3_signed_files_are_prehashed_when_verify_checks_sha256(
    make_bundle: Callable[..., Path], official_key: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``--digest sha256`` verify hashes SHA-256 even where BLAKE3 is signed: so does this."""
    pytest.importorskip("blake3")
    root = make_bundle(sign=False)
    sign_bundle(root, official_key.private, blake3=True)
    assert start_prehash(root) is None  # verify would check BLAKE3: nothing to do here
    pre = start_prehash(root, prefer_blake3=False)
    assert pre is not None
    hashed = _hashed_by_verify(monkeypatch)
    verify_bundle(
        root,
        public_keys=[official_key.private.public],
        prehash=pre,
        prefer_blake3=False,
        record_serial=False,
    )
    assert hashed == []  # every listed file came from the prehash


def test_unreadable_trust_input_cancels_the_hashing(sharded: Path, tmp_path: Path) -> None:
    """Bad input found before the signatures are read still stops the background hashing."""
    pre = start_prehash(sharded)
    assert pre is not None
    with pytest.raises(SonicRegistryError):
        verify_bundle(sharded, tmp_path / "no-such-trust.json", prehash=pre)
    assert pre.cancelled


def test_pool_map_keeps_order_raises_first_failure_and_stops_early() -> None:
    from sonic_registry.workpool import pool_map

    assert pool_map(lambda x: x * 2, list(range(50)), threads=2) == [x * 2 for x in range(50)]
    started: list[int] = []

    def fail_at_three_and_four(x: int) -> int:
        started.append(x)
        if x == 3:  # fails after item 4 did: still the one raised (input order)
            time.sleep(0.05)
            raise ValueError(f"item {x}")
        if x == 4:
            raise ValueError(f"item {x}")
        time.sleep(0.001)  # the third thread succeeds: only the pool's stop ends it early
        return x

    with pytest.raises(ValueError, match="item 3"):
        pool_map(fail_at_three_and_four, list(range(1000)), threads=3)
    assert len(started) < 1000  # no new item starts after a failure
