"""The verified loader: one read hashes and loads; swapped, malformed, unlisted files never load."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from helpers import Keys, release_toml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

from sonic_registry.bundle import sign_bundle, verify_bundle, verify_envelope
from sonic_registry.digest import FileDigest, hash_file
from sonic_registry.errors import (
    DigestMismatchError,
    InvalidManifest,
    UnlistedFileError,
    UnsafePathError,
    UsageError,
)
from sonic_registry.loader import (
    DTYPES,
    load_component_verified,
    load_file_verified,
    load_state_dict_verified,
    load_verified,
    parse_safetensors_header,
    resolve_device,
)
from sonic_registry.trust import TrustStore

FILES = {"audio_encoder": "enc.safetensors", "motion_decoder": "dec.safetensors"}


def _raw_safetensors(header: dict[str, Any], data: bytes, *, pad_to: int = 8) -> bytes:
    raw = json.dumps(header, separators=(",", ":")).encode()
    if pad_to > 1:
        raw += b" " * (-len(raw) % pad_to)
    return struct.pack("<Q", len(raw)) + raw + data


def _digest(path: Path) -> FileDigest:
    return hash_file(path)


@pytest.fixture
def bundle(tmp_path: Path, official_key: Keys) -> Path:
    root = tmp_path / "bundle"
    root.mkdir()
    gen = torch.Generator().manual_seed(0)
    save_file(
        {
            "proj.weight": torch.randn(16, 8, generator=gen),
            "proj.bias": torch.randn(16, generator=gen),
            "half": torch.randn(3, 5, generator=gen).half(),
            "brain": torch.randn(7, generator=gen).bfloat16(),
            "steps": torch.arange(10, dtype=torch.int64),
            "flags": torch.tensor([True, False, True]),
            "scalar": torch.tensor(3.5, dtype=torch.float64),
            "empty": torch.zeros(0, 4),
        },
        str(root / FILES["audio_encoder"]),
    )
    save_file({"w": torch.ones(4, 4)}, str(root / FILES["motion_decoder"]))
    (root / "release.toml").write_text(release_toml(files=FILES))
    sign_bundle(root, official_key.private)
    return root


def _verified(root: Path, keys: Keys) -> Any:
    return verify_bundle(root, public_keys=[keys.private.public])


def test_loads_every_dtype_exactly_like_safetensors(bundle: Path, official_key: Keys) -> None:
    verified = _verified(bundle, official_key)
    got = load_verified("enc.safetensors", verified, "audio_encoder")
    want = load_file(str(bundle / "enc.safetensors"))
    assert set(got) == set(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype, name
        assert got[name].shape == tensor.shape, name
        assert torch.equal(got[name], tensor), name


def test_absolute_path_inside_root_and_component_merge(bundle: Path, official_key: Keys) -> None:
    verified = _verified(bundle, official_key)
    got = load_verified(bundle / "dec.safetensors", verified, "motion_decoder")
    assert torch.equal(got["w"], torch.ones(4, 4))
    merged = load_component_verified(verified, "audio_encoder")
    assert "proj.weight" in merged


def test_envelope_only_verification_then_one_hashing_load(bundle: Path, official_key: Keys) -> None:
    # Signatures checked, no file hashed yet: the loader's pass is the only one.
    statement = verify_envelope(
        bundle / "release.dsse.json", TrustStore.from_public_keys([official_key.private.public])
    )
    with pytest.raises(UsageError, match="expected root="):
        load_verified("dec.safetensors", statement, "motion_decoder")
    got = load_verified("dec.safetensors", statement, "motion_decoder", root=bundle)
    assert torch.equal(got["w"], torch.ones(4, 4))
    (bundle / "dec.safetensors").write_bytes(b"\0" * (bundle / "dec.safetensors").stat().st_size)
    with pytest.raises(DigestMismatchError):
        load_verified("dec.safetensors", statement, "motion_decoder", root=bundle)


def test_file_swapped_after_verification_is_never_loaded(bundle: Path, official_key: Keys) -> None:
    verified = _verified(bundle, official_key)
    target = bundle / "dec.safetensors"
    # Same size, other bytes, written atomically the way an attacker (or a sync tool) would.
    other = bundle.parent / "other.safetensors"
    save_file({"w": torch.full((4, 4), 2.0)}, str(other))
    assert other.stat().st_size == target.stat().st_size
    os.replace(other, target)
    with pytest.raises(DigestMismatchError, match="sha256: expected"):
        load_verified("dec.safetensors", verified, "motion_decoder")


def test_truncated_or_grown_file_is_refused_before_reading(
    bundle: Path, official_key: Keys
) -> None:
    verified = _verified(bundle, official_key)
    path = bundle / "dec.safetensors"
    with path.open("ab") as fh:
        fh.write(b"\0")
    with pytest.raises(DigestMismatchError, match=r"size: expected \d+ bytes, found"):
        load_verified("dec.safetensors", verified, "motion_decoder")
    path.unlink()
    with pytest.raises(DigestMismatchError, match="found it missing"):
        load_verified("dec.safetensors", verified, "motion_decoder")


def test_wrong_role_unlisted_file_and_unknown_role(bundle: Path, official_key: Keys) -> None:
    verified = _verified(bundle, official_key)
    with pytest.raises(UnlistedFileError, match="audio_encoder"):
        load_verified("dec.safetensors", verified, "audio_encoder")
    with pytest.raises(UnlistedFileError):
        load_verified("release.toml", verified, "audio_encoder")
    with pytest.raises(UsageError, match="expected a role among"):
        load_verified("enc.safetensors", verified, "unet")
    with pytest.raises(UnsafePathError):
        load_verified(bundle.parent / "elsewhere.safetensors", verified, "audio_encoder")


def test_symlink_and_fifo_are_refused(tmp_path: Path) -> None:
    real = tmp_path / "real.safetensors"
    save_file({"a": torch.ones(2)}, str(real))
    link = tmp_path / "link.safetensors"
    link.symlink_to(real)
    with pytest.raises(UnsafePathError, match="symlink"):
        load_file_verified(link, _digest(real))
    fifo = tmp_path / "fifo.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(UnsafePathError, match="regular file"):
        load_file_verified(fifo, FileDigest("0" * 64, 0))


def test_state_dict_strict_keys_one_line_and_module_untouched(
    bundle: Path, official_key: Keys
) -> None:
    verified = _verified(bundle, official_key)
    module = torch.nn.Linear(4, 4, bias=False)
    before = module.weight.detach().clone()
    with pytest.raises(InvalidManifest) as info:
        load_state_dict_verified(module, verified, "motion_decoder")
    message = str(info.value)
    assert "\n" not in message
    assert "missing keys ['weight']" in message and "unexpected keys ['w']" in message
    assert torch.equal(module.weight, before)

    class Fits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(4, 4))

    fits = load_state_dict_verified(Fits(), verified, "motion_decoder")
    assert torch.equal(fits.w, torch.ones(4, 4))

    class WrongShape(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(2, 8))

    with pytest.raises(InvalidManifest, match=r"wrong shapes: w expected \(2, 8\)"):
        load_state_dict_verified(WrongShape(), verified, "motion_decoder")


def test_pickle_component_is_never_loaded(tmp_path: Path, official_key: Keys) -> None:
    root = tmp_path / "pkl"
    root.mkdir()
    torch.save({"w": torch.ones(2)}, root / "enc.pth")
    save_file({"w": torch.ones(2)}, str(root / "dec.safetensors"))
    toml = release_toml(files={"audio_encoder": "enc.pth", "motion_decoder": "dec.safetensors"})
    toml = toml.replace(
        'path = "enc.pth"\nformat = "safetensors"', 'path = "enc.pth"\nformat = "pickle"'
    )
    (root / "release.toml").write_text(toml)
    sign_bundle(root, official_key.private)
    verified = _verified(root, official_key)
    with pytest.raises(UsageError, match="expected safetensors"):
        load_verified("enc.pth", verified, "audio_encoder")


def test_misaligned_tensor_is_copied_not_misread(tmp_path: Path) -> None:
    values = np.arange(6, dtype="<f4")
    header = {
        "a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
        "b": {"dtype": "F32", "shape": [2, 3], "data_offsets": [1, 25]},
    }
    path = tmp_path / "odd.safetensors"
    path.write_bytes(_raw_safetensors(header, b"\x07" + values.tobytes()))
    got = load_file_verified(path, _digest(path))
    assert got["a"].tolist() == [7]
    assert got["b"].tolist() == values.reshape(2, 3).tolist()


def test_numpy_arrays_when_torch_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "np.safetensors"
    save_file({"x": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, str(path))
    bf = tmp_path / "bf.safetensors"
    save_file({"x": torch.ones(2, dtype=torch.bfloat16)}, str(bf))
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    got = load_file_verified(path, _digest(path))
    assert isinstance(got["x"], np.ndarray)
    assert got["x"].tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    with pytest.raises(UsageError, match="BF16 tensors need torch"):
        load_file_verified(bf, _digest(bf))
    with pytest.raises(UsageError, match="cuda needs torch"):
        resolve_device("cuda")


def test_device_choice() -> None:
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="expected auto, cpu, cuda"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="found none"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_load_matches_cpu(bundle: Path, official_key: Keys) -> None:  # pragma: no cover
    verified = _verified(bundle, official_key)
    cpu = load_verified("enc.safetensors", verified, "audio_encoder")
    gpu = load_verified("enc.safetensors", verified, "audio_encoder", device="cuda")
    for name, tensor in cpu.items():
        assert gpu[name].is_cuda
        assert torch.equal(gpu[name].cpu(), tensor)


_PEAK_SCRIPT = """
import sys
import torch
from sonic_registry.digest import hash_file
from sonic_registry.loader import load_file_verified

def status(field):
    with open("/proc/self/status") as fh:
        line = next(l for l in fh if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024

small, big = sys.argv[1], sys.argv[2]
load_file_verified(small, hash_file(small))  # warm every code path first
digest = hash_file(big)
with open("/proc/self/clear_refs", "w") as fh:  # reset VmHWM to the current RSS
    fh.write("5")
before = status("VmRSS")
tensors = load_file_verified(big, digest)
print(status("VmHWM") - before)
"""


@pytest.mark.slow  # a subprocess hashing and loading a large file
def test_peak_memory_is_about_one_copy_of_the_file(tmp_path: Path) -> None:
    small, big = tmp_path / "small.safetensors", tmp_path / "big.safetensors"
    save_file({"a": torch.ones(4)}, str(small))
    save_file({f"w{i}": torch.randn(1024, 1024) for i in range(24)}, str(big))  # 96 MiB
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(small), str(big)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    growth = int(out.stdout.strip())
    size = big.stat().st_size
    assert size * 0.9 < growth < size * 1.25, (growth, size)


def test_import_does_not_pull_torch() -> None:
    code = "import sys, sonic_registry.loader; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- header checks ----------------------------------------------------------------

BAD_HEADERS: list[tuple[dict[str, Any], int, str]] = [
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 12]}}, 12, "expected 8 bytes"),
    ({"a": {"dtype": "Q9", "shape": [1], "data_offsets": [0, 4]}}, 4, "expected one of"),
    ({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, 4, "non-negative"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 8]}}, 4, "end <= 4"),
    (
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
        },
        8,
        "overlaps",
    ),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, 8, "leaves a gap"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, 8, "cover the 8 data bytes"),
    ({"a": {"dtype": "F32", "shape": [1]}}, 4, "exactly dtype, shape, data_offsets"),
    ({"__metadata__": {"k": 1}}, 0, "string values"),
]


@pytest.mark.parametrize(("header", "data_len", "message"), BAD_HEADERS)
def test_malformed_headers_are_refused(header: dict[str, Any], data_len: int, message: str) -> None:
    blob = _raw_safetensors(header, b"\0" * data_len)
    with pytest.raises(InvalidManifest, match=message):
        parse_safetensors_header(blob, len(blob))


def test_header_length_and_duplicate_keys(tmp_path: Path) -> None:
    with pytest.raises(InvalidManifest, match="header length"):
        parse_safetensors_header(struct.pack("<Q", 10**12) + b"{}", 10)
    entry = b'{"dtype":"U8","shape":[1],"data_offsets":[0,1]}'
    dup = b'{"a":' + entry + b',"a":' + entry + b"}"
    blob = struct.pack("<Q", len(dup)) + dup + b"\0"
    with pytest.raises(InvalidManifest, match="duplicate key"):
        parse_safetensors_header(blob, len(blob))
    # A signed file that is not valid safetensors still fails, after the digest matched.
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x02\0\0\0\0\0\0\0[]")
    with pytest.raises(InvalidManifest, match="JSON object"):
        load_file_verified(path, _digest(path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_fuzzed_headers_raise_only_invalid_manifest(blob: bytes) -> None:
    with contextlib.suppress(InvalidManifest):
        parse_safetensors_header(blob, len(blob))


_entry = st.fixed_dictionaries(
    {
        "dtype": st.sampled_from(["F32", "F16", "U8", "I64", "BOOL", "X"]),
        "shape": st.lists(st.integers(-1, 4), max_size=3),
        "data_offsets": st.lists(st.integers(-2, 80), min_size=1, max_size=3),
    }
)


@st.composite
def _consistent_header(draw: st.DrawFn) -> tuple[dict[str, Any], int]:
    """A header whose offsets tile the data exactly (in a random file order), or a near miss.

    Random entries almost never line up, so without these the assertions after
    an accepted header would hardly ever run on a non-empty one.
    """
    names = draw(
        st.lists(st.text("abc", min_size=1, max_size=3), min_size=1, max_size=4, unique=True)
    )
    header: dict[str, Any] = {}
    pos = 0
    for name in draw(st.permutations(names)):
        dtype = draw(st.sampled_from(sorted(DTYPES)))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        nbytes = math.prod(shape) * DTYPES[dtype][0]
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + nbytes]}
        pos += nbytes
    data_len = pos
    flaw = draw(st.sampled_from([None, None, "data", "offset", "shape"]))
    if flaw == "data":
        data_len = max(0, data_len + draw(st.sampled_from([-1, 1, 3])))
    elif flaw is not None:
        entry = header[draw(st.sampled_from(names))]
        field = "data_offsets" if flaw == "offset" else "shape"
        if entry[field]:
            i = draw(st.integers(0, len(entry[field]) - 1))
            entry[field][i] += draw(st.sampled_from([-1, 1]))
    return header, data_len


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.tuples(
            st.dictionaries(st.text("abc", min_size=1, max_size=3), _entry, max_size=4),
            st.integers(0, 80),
        ),
        _consistent_header(),
    )
)
def test_structured_fuzz_accepts_only_consistent_headers(case: tuple[dict[str, Any], int]) -> None:
    header, data_len = case
    blob = _raw_safetensors(header, b"\0" * data_len)
    try:
        start, infos, _ = parse_safetensors_header(blob, len(blob))
    except InvalidManifest:
        return
    # Whatever is accepted tiles the data section exactly, with exact sizes.
    assert start + data_len == len(blob)
    spans = sorted((i.begin, i.end) for i in infos.values())
    assert sum(e - b for b, e in spans) == data_len
    for (_, end), (begin, _) in itertools.pairwise(spans):
        assert end == begin
    for info in infos.values():
        assert info.nbytes == math.prod(info.shape) * DTYPES[info.dtype][0]


_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.int8, torch.uint8]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.dictionaries(
        st.text("abcdefgh._", min_size=1, max_size=6),
        st.tuples(st.sampled_from(_DTYPES), st.lists(st.integers(0, 5), max_size=3)),
        min_size=1,
        max_size=5,
    )
)
def test_round_trip_matches_safetensors(
    tmp_path_factory: pytest.TempPathFactory,
    spec: dict[str, tuple[torch.dtype, list[int]]],
) -> None:
    path = tmp_path_factory.mktemp("rt") / "x.safetensors"
    gen = torch.Generator().manual_seed(1)
    tensors = {
        name: (torch.randn(shape, generator=gen) * 50).to(dtype)
        for name, (dtype, shape) in spec.items()
    }
    save_file(tensors, str(path))
    signed = _digest(path)
    got = load_file_verified(path, signed)
    assert set(got) == set(tensors)
    for name, tensor in tensors.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor)
    # One flipped byte anywhere is a digest mismatch, never a load.
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(DigestMismatchError):
        load_file_verified(path, signed)


def test_loader_follows_links_only_inside_the_bundle(
    bundle: Path, official_key: Keys, tmp_path: Path
) -> None:
    # The loader opens what verify checked: a link inside the root is followed,
    # one leading out of it is refused (bytes are hash-checked either way).
    verified = _verified(bundle, official_key)
    target = bundle / "dec.safetensors"
    inside = bundle / "blob.bin"
    target.rename(inside)
    target.symlink_to(inside.name)
    assert load_verified("dec.safetensors", verified, "motion_decoder")
    outside = tmp_path / "outside.safetensors"
    inside.rename(outside)
    target.unlink()
    target.symlink_to(outside)
    with pytest.raises(UnsafePathError, match="expected a path inside the bundle"):
        load_verified("dec.safetensors", verified, "motion_decoder")
