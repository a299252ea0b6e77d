"""The safetensors header, parsed strictly: one parser for the loader, sniff, sign and verify.

A safetensors file is ``u64 little-endian N``, ``N`` bytes of JSON (padded with
spaces only), then the data section. The header is untrusted even in a signed
file, so every way it can be malformed is an :class:`InvalidManifest` naming
the tensor and what was expected, never a foreign ``TypeError``/``ValueError``
from torch or numpy later. The work is linear in the header size:

* caps: header bytes (:data:`MAX_HEADER_BYTES`), tensors
  (:data:`MAX_TENSORS`), dimensions per tensor (:data:`MAX_DIMS`) and the size
  of one dimension (:data:`MAX_DIM`, so an empty tensor cannot carry a 2^63
  dimension that torch then refuses);
* the element count is multiplied one dimension at a time and stops as soon as
  it exceeds what the data section could hold (no quadratic big-int product);
* known dtypes (strings only), offsets inside the data section, no overlap, no
  gap, every data byte accounted for;
* tensor names printable (no NUL, escape codes, bidi controls or lone
  surrogates) and metadata valid UTF-8.

    >>> parse_header(b"\\x02\\x00\\x00\\x00\\x00\\x00\\x00\\x00{}", 10)[0]
    10
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .canonical import loads_strict
from .constants import (
    MAX_SAFETENSORS_DIM,
    MAX_SAFETENSORS_DIMS,
    MAX_SAFETENSORS_HEADER_BYTES,
    MAX_SAFETENSORS_TENSORS,
)
from .errors import InvalidManifest, UnreadableInputError
from .fileio import open_regular

if TYPE_CHECKING:  # pragma: no cover
    from .manifest import Release

__all__ = [
    "DTYPES",
    "MAX_DIM",
    "MAX_DIMS",
    "MAX_HEADER_BYTES",
    "MAX_TENSORS",
    "TensorInfo",
    "check_claimed_safetensors",
    "parse_header",
    "read_header",
]

#: The caps live in :mod:`sonic_registry.constants` (the hook and sniffing share them).
MAX_HEADER_BYTES = MAX_SAFETENSORS_HEADER_BYTES
MAX_TENSORS = MAX_SAFETENSORS_TENSORS
MAX_DIMS = MAX_SAFETENSORS_DIMS
MAX_DIM = MAX_SAFETENSORS_DIM

#: safetensors dtype -> (itemsize, torch dtype name, numpy dtype name or None)
DTYPES: Mapping[str, tuple[int, str, str | None]] = {
    "F64": (8, "float64", "<f8"),
    "F32": (4, "float32", "<f4"),
    "F16": (2, "float16", "<f2"),
    "BF16": (2, "bfloat16", None),
    "F8_E4M3": (1, "float8_e4m3fn", None),
    "F8_E5M2": (1, "float8_e5m2", None),
    "I64": (8, "int64", "<i8"),
    "I32": (4, "int32", "<i4"),
    "I16": (2, "int16", "<i2"),
    "I8": (1, "int8", "i1"),
    "U64": (8, "uint64", "<u8"),
    "U32": (4, "uint32", "<u4"),
    "U16": (2, "uint16", "<u2"),
    "U8": (1, "uint8", "u1"),
    "BOOL": (1, "bool", "?"),
}


@dataclass(frozen=True, slots=True)
class TensorInfo:
    """One entry of a safetensors header, already checked against the file size."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  # offset inside the data section
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.begin


def _header_length(head: bytes | memoryview, file_size: int, where: str) -> int:
    if file_size < 8 or len(head) < 8:
        raise InvalidManifest("", "not a safetensors file: shorter than 8 bytes", path=where)
    header_len = int.from_bytes(bytes(head[:8]), "little")
    if header_len > MAX_HEADER_BYTES or 8 + header_len > file_size:
        raise InvalidManifest(
            "header",
            f"expected a header length <= {min(MAX_HEADER_BYTES, file_size - 8)}, "
            f"found {header_len}",
            path=where,
        )
    return header_len


def parse_header(
    head: bytes | memoryview, file_size: int, *, where: str = ""
) -> tuple[int, dict[str, TensorInfo], dict[str, str]]:
    """Parse and check the header at the start of a safetensors file of ``file_size`` bytes.

    ``head`` must hold at least the first ``8 + header_length`` bytes. Returns
    ``(data_start, tensors, metadata)``.
    """
    header_len = _header_length(head, file_size, where)
    if len(head) < 8 + header_len:
        raise InvalidManifest("header", "truncated header", path=where)
    raw = bytes(head[8 : 8 + header_len])
    body = raw.rstrip(b" ")  # the format pads with spaces, nothing else
    if not body.startswith(b"{") or not body.endswith(b"}"):
        raise InvalidManifest(
            "header", "expected a JSON object padded with spaces only", path=where
        )
    doc = loads_strict(body, where=where)
    if not isinstance(doc, dict):
        raise InvalidManifest("header", "expected a JSON object", path=where)
    count = len(doc) - ("__metadata__" in doc)
    if count > MAX_TENSORS:
        raise InvalidManifest(
            "header", f"expected at most {MAX_TENSORS} tensors, found {count}", path=where
        )
    data_start = 8 + header_len
    data_size = file_size - data_start
    metadata: dict[str, str] = {}
    tensors: dict[str, TensorInfo] = {}
    for name, spec in doc.items():
        if name == "__metadata__":
            metadata = _metadata(spec, where)
            continue
        tensors[name] = _tensor_info(name, spec, data_size, where)
    _check_coverage(tensors, data_size, where)
    return data_start, tensors, metadata


def _metadata(spec: Any, where: str) -> dict[str, str]:
    if not isinstance(spec, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _utf8(k) and _utf8(v) for k, v in spec.items()
    ):
        raise InvalidManifest(
            "__metadata__", "expected an object of UTF-8 string values", path=where
        )
    return dict(spec)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a \\ud800 escape
        return False
    return True


def _check_coverage(tensors: Mapping[str, TensorInfo], data_size: int, where: str) -> None:
    # No two tensors may share bytes, and no byte of the data section may be
    # unaccounted for (hidden payloads would otherwise ride along unseen).
    pos = 0
    for info in sorted(tensors.values(), key=lambda t: (t.begin, t.end)):
        if info.begin != pos:
            problem = "overlaps the previous tensor" if info.begin < pos else "leaves a gap"
            raise InvalidManifest(
                f"{info.name}.data_offsets",
                f"{problem}: expected begin {pos}, found {info.begin}",
                path=where,
            )
        pos = info.end
    if pos != data_size:
        raise InvalidManifest(
            "data_offsets",
            f"expected tensors to cover the {data_size} data bytes, found {pos}",
            path=where,
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_info(name: str, spec: Any, data_size: int, where: str) -> TensorInfo:
    if not name or not name.isprintable():
        # isprintable() is False for NUL, ESC and every control, bidi override
        # and lone surrogate: the name is printed and used as a dict key later.
        raise InvalidManifest(
            "header", f"expected a printable tensor name, found {name!r}", path=where
        )
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise InvalidManifest(
            name, "expected an object with exactly dtype, shape, data_offsets", path=where
        )
    dtype = spec["dtype"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise InvalidManifest(
            f"{name}.dtype", f"expected one of {', '.join(DTYPES)}, found {dtype!r}", path=where
        )
    itemsize = DTYPES[dtype][0]
    shape = _shape(name, spec["shape"], itemsize, data_size, where)
    offsets = spec["data_offsets"]
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(_is_int(o) for o in offsets)
        or not 0 <= offsets[0] <= offsets[1] <= data_size
    ):
        raise InvalidManifest(
            f"{name}.data_offsets",
            f"expected [begin, end] with 0 <= begin <= end <= {data_size}, found {_short(offsets)}",
            path=where,
        )
    expected = itemsize
    for dim in shape:
        expected *= dim  # bounded: _shape kept the running product <= data_size
    if offsets[1] - offsets[0] != expected:
        raise InvalidManifest(
            f"{name}.data_offsets",
            f"expected {expected} bytes for {dtype}{list(shape)}, found {offsets[1] - offsets[0]}",
            path=where,
        )
    return TensorInfo(name, dtype, shape, offsets[0], offsets[1])


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _shape(name: str, shape: Any, itemsize: int, data_size: int, where: str) -> tuple[int, ...]:
    """The checked shape; linear time, every intermediate product bounded by ``data_size``."""
    field = f"{name}.shape"
    if not isinstance(shape, list):
        raise InvalidManifest(field, f"expected a list, found {_short(shape)}", path=where)
    if len(shape) > MAX_DIMS:
        raise InvalidManifest(
            field, f"expected at most {MAX_DIMS} dimensions, found {len(shape)}", path=where
        )
    nonzero = itemsize
    empty = False
    for dim in shape:
        if not _is_int(dim) or not 0 <= dim <= MAX_DIM:
            raise InvalidManifest(
                field,
                f"expected non-negative integers <= 2^48, found {_short(dim)} in {_short(shape)}",
                path=where,
            )
        if dim == 0:
            empty = True
            continue
        nonzero *= dim
        if nonzero > max(data_size, MAX_DIM):
            # Even an empty tensor's other dimensions must multiply to a size
            # torch and numpy can represent; a full one must fit the data.
            raise InvalidManifest(
                field,
                f"expected at most {data_size} bytes of data, found a larger shape",
                path=where,
            )
    if not empty and nonzero > data_size:
        raise InvalidManifest(
            field, f"expected at most {data_size} bytes of data, found {nonzero}", path=where
        )
    return tuple(shape)


def read_header(path: str | Path, *, where: str = "") -> tuple[int, dict[str, TensorInfo]]:
    """Parse only the header of the safetensors file at ``path`` (microseconds, no data read).

    Sign and verify call this for every file that claims ``format = "safetensors"``,
    so a file that would not load is refused when it is signed, not when it runs.
    """
    label = where or str(path)
    try:
        fd, st = open_regular(Path(path))
    except FileNotFoundError as exc:
        raise UnreadableInputError(label, "no such file") from exc
    except OSError as exc:
        raise UnreadableInputError(label, f"cannot read: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "rb", closefd=False) as fh:
            first = fh.read(8)
            header_len = _header_length(first, st.st_size, label)
            head = first + fh.read(header_len)
    except OSError as exc:
        raise UnreadableInputError(label, f"cannot read: {exc.strerror}") from exc
    finally:
        os.close(fd)
    data_start, tensors, _ = parse_header(head, st.st_size, where=label)
    return data_start, tensors


def check_claimed_safetensors(release: Release, path_of: Callable[[str], str | Path]) -> None:
    """Parse the header of every file ``release`` says is safetensors; raise the first problem.

    Called by sign (before anything is signed) and verify (after the digests
    matched), so a file that claims ``format = "safetensors"`` but would not
    load is refused where it is signed, not where it runs. Only headers are
    read: microseconds per file. ``path_of`` maps a bundle name to the confined
    path to open.
    """
    for component in release.components.values():
        if component.format != "safetensors":
            continue
        for name in component.paths:
            read_header(path_of(name), where=name)
