"""`convert` unpickles only pinned sources, with a torch whose weights_only loader is sound."""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import Keys

from sonic_registry.bundle import sign_bundle
from sonic_registry.cli import main
from sonic_registry.convert import FORCE_UNSAFE_ENV


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _convert(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, ["convert", *args])
    return res.exit_code, res.output


@pytest.fixture
def ckpt(tmp_path: Path) -> Path:
    src = tmp_path / "ckpt.pth"
    torch.save({"w": torch.ones(3)}, src)
    return src


def test_an_unpinned_source_is_never_unpickled(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    src = tmp_path / "evil.pth"
    src.write_bytes(pickle.dumps({"w": _Payload(marker)}))  # without a pin torch never sees it
    code, text = _convert(str(src), str(tmp_path / "out.safetensors"))
    assert code == 2 and "is not pinned" in text and text.count("\n") == 1
    assert not (tmp_path / "out.safetensors").exists() and not marker.exists()


def test_a_wrong_source_sha256_is_a_verdict(ckpt: Path, tmp_path: Path) -> None:
    code, text = _convert(str(ckpt), str(tmp_path / "o.safetensors"), "--source-sha256", "0" * 64)
    assert code == 1 and "expected sha256 000" in text
    code, text = _convert(str(ckpt), str(tmp_path / "o.safetensors"), "--source-sha256", "xyz")
    assert code == 2 and "64 hex digits" in text


def test_source_sha256_pins(ckpt: Path, tmp_path: Path) -> None:
    pin = hashlib.sha256(ckpt.read_bytes()).hexdigest().upper()  # case does not matter
    code, text = _convert(str(ckpt), str(tmp_path / "o.safetensors"), "--source-sha256", pin)
    assert code == 0, text


def test_a_verified_release_pins_what_it_lists(
    make_bundle: Callable[..., Path],
    official_key: Keys,
    make_key: Callable[..., Keys],
    tmp_path: Path,
) -> None:
    root = make_bundle(sign=False)
    torch.save({"w": torch.ones(3)}, root / "extra.ckpt")
    sign_bundle(root, official_key.private)
    out = tmp_path / "o.safetensors"
    pub = str(official_key.pub_path)
    code, text = _convert(
        str(root / "extra.ckpt"), str(out), "--release", str(root), "--public-key", pub
    )
    assert code == 0, text
    # The same release, but trusted by nobody here: not a pin.
    stranger = str(make_key("stranger").pub_path)
    code, text = _convert(str(root / "extra.ckpt"), str(tmp_path / "p.safetensors"),
                          "--release", str(root), "--public-key", stranger)  # fmt: skip
    assert code == 1 and "unknown key" in text
    # A file the release does not list is still unpinned.
    other = tmp_path / "other.pth"
    torch.save({"w": torch.zeros(2)}, other)
    code, text = _convert(str(other), str(tmp_path / "q.safetensors"), "--release", str(root),
                          "--public-key", pub)  # fmt: skip
    assert code == 2 and "is not pinned" in text


@pytest.mark.parametrize("value", ["1", "true", "YES"])
def test_force_no_weights_only_env_is_refused(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(FORCE_UNSAFE_ENV, value)
    code, text = _convert(str(ckpt), str(tmp_path / "o.safetensors"), "--source-sha256",
                          hashlib.sha256(ckpt.read_bytes()).hexdigest())  # fmt: skip
    assert code == 2 and FORCE_UNSAFE_ENV in text
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("version", ["2.5.1", "2.6.0+cu124", "2.9.1", "1.13.0"])
def test_old_torch_is_refused(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str
) -> None:
    monkeypatch.setattr(torch, "__version__", version)
    code, text = _convert(str(ckpt), str(tmp_path / "o.safetensors"), "--source-sha256",
                          hashlib.sha256(ckpt.read_bytes()).hexdigest())  # fmt: skip
    assert code == 2 and "expected torch >= 2.10" in text and version in text
