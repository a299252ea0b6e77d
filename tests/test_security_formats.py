"""Strict content classification: a strict safetensors parse first, then every pickle torch runs.

Before: protocol 0/1 pickles, torch's legacy tar checkpoints and compressed
wrappers were "other" (the no-pickle hook passed them), while valid
safetensors whose header length reads as ``80 02``.. (N = 640, 896, ...) were
"pickle" (the hook refused them and ``init`` wrote ``format = "pickle"``).
"""

from __future__ import annotations

import bz2
import collections
import gzip
import io
import json
import lzma
import pickle
import struct
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner
from helpers import Keys
from hypothesis import given, settings
from hypothesis import strategies as st

from sonic_registry.bundle import sign_bundle, verify_bundle
from sonic_registry.cli import main
from sonic_registry.errors import InvalidManifest
from sonic_registry.formats import is_pickle_like, sniff, sniff_bytes
from sonic_registry.precommit.no_pickle_hook import no_pickle


def safetensors_with_header_length(n: int) -> bytes:
    """A valid safetensors file whose header is exactly ``n`` bytes (space padded)."""
    header = json.dumps({"w": {"dtype": "U8", "shape": [4], "data_offsets": [0, 4]}}).encode()
    assert len(header) <= n
    return struct.pack("<Q", n) + header + b" " * (n - len(header)) + b"\1\2\3\4"


def _torch_bytes(**kwargs: Any) -> bytes:
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf, **kwargs)
    return buf.getvalue()


def _legacy_tar() -> bytes:
    """The layout torch's legacy_load reads: a tar of storages, tensors and pickle."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("sys_info", "pickle", "tensors", "storages"):
            data = pickle.dumps({"name": name}, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


PAYLOAD = pickle.dumps(collections.OrderedDict(w=[1.0, 2.0]), protocol=2)
PICKLES: dict[str, bytes] = {
    "protocol 0": pickle.dumps(collections.OrderedDict(w=[1.0, 2.0], b="x"), protocol=0),
    "protocol 1": pickle.dumps(collections.OrderedDict(w=[1.0, 2.0], b="x"), protocol=1),
    "protocol 0 list": pickle.dumps([{"a": 1}, ("b", 2.5)], protocol=0),
    "torch protocol 0": _torch_bytes(pickle_protocol=0, _use_new_zipfile_serialization=False),
    "torch protocol 1": _torch_bytes(pickle_protocol=1, _use_new_zipfile_serialization=False),
    "torch legacy tar": _legacy_tar(),
    "gzip": gzip.compress(PAYLOAD),
    "bz2": bz2.compress(PAYLOAD),
    "xz": lzma.compress(PAYLOAD),
    "7z": b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\0" * 24,
    "zstd": b"\x28\xb5\x2f\xfd" + b"\0" * 16,
}


@pytest.mark.parametrize("name", sorted(PICKLES))
def test_every_pickle_torch_runs_is_pickle_like(tmp_path: Path, name: str) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(PICKLES[name])
    assert is_pickle_like(sniff(path)), sniff(path)
    problems = no_pickle([str(path)])
    assert len(problems) == 1 and "pickle checkpoint" in problems[0]


@pytest.mark.parametrize("n", [640, 896, 1152, 1408, 640 + 65536, 1408 + 65536])
def test_safetensors_whose_length_looks_like_pickle_is_safetensors(tmp_path: Path, n: int) -> None:
    blob = safetensors_with_header_length(n)
    assert blob[0] == 0x80 and 2 <= blob[1] <= 5  # reads as a pickle PROTO opcode
    path = tmp_path / "unet.safetensors"
    path.write_bytes(blob)
    assert sniff(path) == "safetensors"
    assert no_pickle([str(path)]) == []


def test_init_writes_safetensors_for_a_640_byte_header(tmp_path: Path) -> None:
    root = tmp_path / "m"
    root.mkdir()
    (root / "unet.safetensors").write_bytes(safetensors_with_header_length(640))
    res = CliRunner().invoke(main, ["init", str(root), "--model", "sonic", "--version", "1.0.0"])
    assert res.exit_code == 0, res.output
    toml = (root / "release.toml").read_text()
    assert 'format = "safetensors"' in toml and 'format = "pickle"' not in toml


@pytest.mark.parametrize(
    "text",
    [
        b"# README\n\nSonic weights.\n",
        b'[release]\nmodel = "sonic"\n',
        b'{"nodes": []}',
        b"lll" * 10,
        b"",
    ],
)
def test_text_is_not_a_pickle(text: bytes) -> None:
    assert sniff_bytes(text) == "other"


@pytest.mark.parametrize("text", [b"# README\n\nSonic weights.\n", b'[release]\nmodel = "s"\n'])
def test_the_start_of_a_long_text_is_not_a_pickle(text: bytes) -> None:
    assert sniff_bytes((text * 400)[:4096], size=10**6) == "other"


@settings(max_examples=60, deadline=None)
@given(
    value=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=8,
    ),
    protocol=st.integers(0, pickle.HIGHEST_PROTOCOL),
)
def test_property_any_pickle_of_tensor_like_state_is_pickle_like(value: Any, protocol: int) -> None:
    # Wrapped the way checkpoints are (a dict of state), every protocol is caught.
    data = pickle.dumps({"state_dict": value, "step": 1, "name": "unet"}, protocol=protocol)
    assert is_pickle_like(sniff_bytes(data)), (protocol, data[:40])


@settings(max_examples=60, deadline=None)
@given(pad=st.integers(0, 3000))
def test_property_valid_safetensors_is_always_safetensors(pad: int) -> None:
    blob = safetensors_with_header_length(60 + pad)
    assert sniff_bytes(blob) == "safetensors"


# --- sign and verify parse the header of files that claim safetensors --------------


def test_sign_refuses_a_claimed_safetensors_that_does_not_parse(
    make_bundle: Callable[..., Path], official_key: Keys
) -> None:
    root = make_bundle(sign=False)
    (root / "unet.safetensors").write_bytes(PAYLOAD)
    with pytest.raises(InvalidManifest, match=r"unet\.safetensors"):
        sign_bundle(root, official_key.private)
    assert not (root / "release.dsse.json").exists()


def test_verify_refuses_a_signed_claimed_safetensors_that_does_not_parse(
    make_bundle: Callable[..., Path], official_key: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Signed by a tool without the check (the envelope is genuine, the file is not safetensors).
    root = make_bundle(sign=False)
    (root / "unet.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}\t\t\t\t\t\t")
    with monkeypatch.context() as m:
        m.setattr("sonic_registry.bundle.check_claimed_safetensors", lambda *a, **k: None)
        sign_bundle(root, official_key.private)
    with pytest.raises(InvalidManifest, match=r"unet\.safetensors: header"):
        verify_bundle(root, public_keys=[official_key.private.public])
    res = CliRunner().invoke(
        main, ["verify", str(root), "--public-key", str(official_key.pub_path)]
    )
    assert res.exit_code == 2 and "unet.safetensors" in res.output
