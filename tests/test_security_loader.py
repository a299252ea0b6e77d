"""The loader raises only this project's errors, in linear time, whatever a signed header says.

Every case here is a file whose SHA-256 matches (the attacker signed it, or a
release key was careless): only the header parser stands between it and torch.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonic_registry.digest import hash_file
from sonic_registry.errors import InvalidManifest, SonicRegistryError, UsageError, VerificationError
from sonic_registry.loader import load_file_verified
from sonic_registry.safetensors_header import (
    MAX_DIMS,
    MAX_TENSORS,
    parse_header,
)


def _blob(header: Any, data: bytes = b"", *, pad: bytes = b"") -> bytes:
    raw = (header if isinstance(header, bytes) else json.dumps(header).encode()) + pad
    return struct.pack("<Q", len(raw)) + raw + data


def _load(tmp_path: Path, blob: bytes) -> dict[str, Any]:
    path = tmp_path / "w.safetensors"
    path.write_bytes(blob)
    return load_file_verified(path, hash_file(path))


def _one(shape: Any, dtype: Any = "U8", offsets: Any = None, name: str = "t") -> dict[str, Any]:
    return {name: {"dtype": dtype, "shape": shape, "data_offsets": offsets or [0, 0]}}


MALFORMED: list[tuple[str, bytes, str]] = [
    ("dtype list", _blob(_one([0], dtype=["F32"])), "dtype"),
    ("dtype object", _blob(_one([0], dtype={"a": 1})), "dtype"),
    ("2^63 next to 0", _blob(_one([2**63, 0])), "shape"),
    ("overflow, no elements", _blob(_one([2**40, 2**40, 2**40, 0])), "shape"),
    ("dim above 2^48 on empty", _blob(_one([2**48 + 1, 0])), "shape"),
    ("20,000 dims", _blob(_one([1] * 20_000)), "dimensions"),
    ("tab padding", _blob(_one([0]), pad=b"\t"), "padded with spaces"),
    ("newline padding", _blob(_one([0]), pad=b"\n"), "padded with spaces"),
    ("NUL in name", _blob(_one([0], name="a\x00b")), "printable"),
    ("escape in name", _blob(_one([0], name="\x1b[2K verified")), "printable"),
    ("bidi in name", _blob(_one([0], name="a\u202eb")), "printable"),
    (
        "lone surrogate",
        _blob(b'{"\\ud800":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}}'),
        "printable",
    ),
    ("bool dim", _blob(_one([True])), "shape"),
    ("float dim", _blob(_one([1.0], offsets=[0, 1]), b"\0"), "shape"),
    ("metadata surrogate", _blob(b'{"__metadata__":{"k":"\\udc00"}}'), "metadata"),
    ("not an object", _blob(b"[1]"), "JSON object"),
    ("offsets of strings", _blob(_one([1], offsets=["0", "1"]), b"\0"), "data_offsets"),
]


@pytest.mark.parametrize(
    ("blob", "message"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED]
)
def test_malformed_signed_headers_raise_invalid_manifest(
    tmp_path: Path, blob: bytes, message: str
) -> None:
    with pytest.raises(InvalidManifest, match=message):
        _load(tmp_path, blob)


def test_tensor_count_is_capped(tmp_path: Path) -> None:
    header = {
        f"t{i}": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}
        for i in range(MAX_TENSORS + 1)
    }
    with pytest.raises(InvalidManifest, match=f"at most {MAX_TENSORS} tensors"):
        _load(tmp_path, _blob(header))


def test_many_dimensions_are_refused_in_linear_time(tmp_path: Path) -> None:
    # 600,000 dimensions took over 240 s (quadratic big-int product) before the caps.
    blob = _blob(_one([2] * 600_000))
    start = time.perf_counter()
    with pytest.raises(InvalidManifest, match=f"at most {MAX_DIMS} dimensions"):
        parse_header(blob, len(blob))
    assert time.perf_counter() - start < 5


def test_shape_product_stops_early() -> None:
    # Within the dimension cap, the running product is checked as it grows.
    blob = _blob(_one([2**48] * MAX_DIMS))
    with pytest.raises(InvalidManifest, match="shape"):
        parse_header(blob, len(blob))


def test_space_padding_and_empty_tensors_still_load(tmp_path: Path) -> None:
    blob = _blob(_one([3, 0, 2], dtype="F32"), pad=b"   ")
    got = _load(tmp_path, blob)
    assert tuple(got["t"].shape) == (3, 0, 2)


# --- property: structured headers, every outcome is a tensor dict or our error --------

_dims = st.one_of(
    st.integers(0, 4),
    st.integers(0, 2**64),
    st.integers(-(2**64), -1),
    st.just(2**63),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
)
_dtype = st.one_of(
    st.sampled_from(["F32", "F16", "BF16", "U8", "I64", "BOOL", "F8_E4M3"]),
    st.text(max_size=4),
    st.lists(st.just("F32"), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.integers(),
    st.none(),
)
_offsets = st.one_of(
    st.lists(st.integers(-4, 64), min_size=0, max_size=3),
    st.lists(st.integers(0, 2**70), min_size=2, max_size=2),
    st.text(max_size=3),
)
_spec = st.one_of(
    st.fixed_dictionaries(
        {"dtype": _dtype, "shape": st.lists(_dims, max_size=6), "data_offsets": _offsets}
    ),
    st.dictionaries(st.sampled_from(["dtype", "shape", "data_offsets", "x"]), _dims, max_size=4),
    st.lists(st.integers(), max_size=2),
    st.integers(),
)
_names = st.text(max_size=6)
_headers = st.dictionaries(
    st.one_of(_names, st.just("__metadata__")),
    st.one_of(_spec, st.dictionaries(_names, st.one_of(_names, st.integers()), max_size=2)),
    max_size=4,
)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    header=_headers,
    data=st.binary(max_size=64),
    pad=st.sampled_from([b"", b" ", b"   ", b"\t", b"\n", b"\x00"]),
)
def test_loader_raises_only_project_errors(
    tmp_path: Path, header: dict[str, Any], data: bytes, pad: bytes
) -> None:
    try:
        blob = _blob(json.dumps(header).encode("utf-8", "surrogatepass"), data, pad=pad)
    except UnicodeEncodeError:  # pragma: no cover - json.dumps escapes surrogates
        return
    try:
        tensors = _load(tmp_path, blob)
    except (UsageError, VerificationError) as exc:
        assert isinstance(exc, SonicRegistryError)
        assert str(exc)
        return
    # Whatever loaded matches its header exactly.
    _, infos, _ = parse_header(blob, len(blob))
    assert set(tensors) == set(infos)
    for name, info in infos.items():
        assert tuple(tensors[name].shape) == info.shape
