"""An interrupted sign or trust-store write leaves the previous file intact."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sonic_registry import fileio
from sonic_registry.bundle import sign_bundle, verify_bundle
from sonic_registry.digest import hash_file
from sonic_registry.trust import TrustStore


class Crash(BaseException):
    """Stands in for a kill at the worst moment (not an Exception: nothing catches it)."""


def _crash_on_replace(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(src: str, dst: str) -> None:
        raise Crash(f"killed before renaming {src} over {dst}")

    monkeypatch.setattr(fileio.os, "replace", boom)


def test_interrupted_sign_keeps_previous_envelope(
    make_bundle, make_key, official_key, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_bundle()
    before = (root / "release.dsse.json").read_bytes()
    _crash_on_replace(monkeypatch)
    with pytest.raises(Crash):
        sign_bundle(root, make_key("second").private)
    monkeypatch.undo()
    assert (root / "release.dsse.json").read_bytes() == before
    assert sorted(p.name for p in root.iterdir() if p.name.startswith(".")) == []
    verify_bundle(root, public_keys=[official_key.private.public])


def test_interrupted_trust_write_keeps_previous_store(
    trust_file: Path, make_key, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = trust_file.read_bytes()
    store = TrustStore.load(trust_file)
    _crash_on_replace(monkeypatch)
    with pytest.raises(Crash):
        store.with_key(make_key("x").private.public, ["official"]).save()
    monkeypatch.undo()
    assert trust_file.read_bytes() == before
    assert TrustStore.load(trust_file).version == store.version


def test_killed_writer_process_never_leaves_a_partial_file(tmp_path: Path) -> None:
    # A real process killed with SIGKILL in the middle of writing 64 MiB: the
    # target holds the old content or the new, never a mixture.
    target = tmp_path / "trust.json"
    target.write_bytes(b"old")
    code = (
        "import sys; from sonic_registry.fileio import atomic_write_bytes\n"
        "print('go', flush=True)\n"
        "atomic_write_bytes(sys.argv[1], b'n' * (64 << 20))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "go"
    proc.kill()
    proc.wait()
    content = target.read_bytes()
    assert content in (b"old", b"n" * (64 << 20))
    leftovers = [p for p in os.listdir(tmp_path) if p != "trust.json"]
    # a temp file may remain after SIGKILL, but it is never the target itself
    assert all(p.startswith(".trust.json.") for p in leftovers)


def test_writing_into_a_missing_directory_is_one_clear_line(tmp_path: Path) -> None:
    from sonic_registry.errors import UnreadableInputError

    target = tmp_path / "nodir" / "k.key"
    with pytest.raises(UnreadableInputError) as exc:
        fileio.atomic_write_bytes(target, b"x")
    assert str(exc.value) == f"{target}: cannot write: no directory {target.parent}"


def test_atomic_writer_streams_and_syncs_the_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real = fileio.fsync_directory
    monkeypatch.setattr(fileio, "fsync_directory", lambda d: (synced.append(str(d)), real(d)))
    target = tmp_path / "big.bin"
    target.write_bytes(b"old")
    with fileio.atomic_writer(target, mode=0o600) as fh:
        assert Path(fh.name).parent == tmp_path and fh.name != str(target)
        for i in range(4):
            fh.write(bytes([i]) * 1000)
        assert target.read_bytes() == b"old"  # nothing visible before the rename
    assert target.read_bytes() == b"".join(bytes([i]) * 1000 for i in range(4))
    assert target.stat().st_mode & 0o777 == 0o600
    assert synced == [str(tmp_path)]
    assert os.listdir(tmp_path) == ["big.bin"]


def test_atomic_writer_failure_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "index.sqlite"
    target.write_bytes(b"old")
    with pytest.raises(Crash), fileio.atomic_writer(target) as fh:
        fh.write(b"half of the new")
        raise Crash("killed mid-write")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["index.sqlite"]


def test_convert_writes_through_atomic_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """convert used to rename without syncing the directory; it now uses the one writer."""
    torch = pytest.importorskip("torch")
    import sonic_registry.convert as convert_module

    src = tmp_path / "ckpt.pth"
    torch.save({"w": torch.ones(3)}, src)
    dst = tmp_path / "out.safetensors"
    calls: list[Path] = []
    real = fileio.atomic_writer

    def spy(path: Path, **kw: int) -> Any:
        calls.append(Path(path))
        return real(path, **kw)

    monkeypatch.setattr(convert_module, "atomic_writer", spy)
    convert_module.convert_checkpoint(src, dst, source_sha256=hash_file(src).sha256)
    assert calls == [dst] and dst.stat().st_size > 0
    assert sorted(os.listdir(tmp_path)) == ["ckpt.pth", "out.safetensors"]
