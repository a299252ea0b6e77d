"""What kind of file is this? Decided by content (magic bytes), never by name alone.

A ``.safetensors`` name on a pickle is still a pickle, and a ``unet.pth`` that is
really safetensors is safe. Only the first bytes are read; nothing is parsed
beyond the headers and nothing is ever unpickled.

    >>> sniff_bytes(b"\\x80\\x04\\x95")
    'pickle'
    >>> sniff_bytes(b"version https://git-lfs.github.com/spec/v1\\n")
    'lfs-pointer'
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from .constants import MAX_SAFETENSORS_HEADER_BYTES

__all__ = [
    "PICKLE_KINDS",
    "WEIGHT_EXTENSIONS",
    "WEIGHT_KINDS",
    "is_pickle_like",
    "is_weight_file",
    "sniff",
    "sniff_bytes",
]

HEAD = 64
LFS_MAGIC = b"version https://git-lfs.github.com/spec/v1"
PICKLE_KINDS = frozenset({"pickle", "torch-zip", "zip-unlistable"})
WEIGHT_KINDS = frozenset({"safetensors", "gguf", "npy", "onnx", *PICKLE_KINDS})
WEIGHT_EXTENSIONS = frozenset(
    {
        ".safetensors",
        ".pth",
        ".pt",
        ".ckpt",
        ".bin",
        ".pkl",
        ".pickle",
        ".onnx",
        ".gguf",
        ".npy",
        ".npz",
        ".h5",
        ".msgpack",
        ".model",
    }
)


def sniff_bytes(head: bytes, size: int | None = None) -> str:
    """Classify a file from its first bytes (``size`` sharpens the safetensors check)."""
    if head.startswith(LFS_MAGIC):
        return "lfs-pointer"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"  # pickle protocol 2-5 (torch.save before 1.6 and plain pickles)
    if head.startswith(b"GGUF"):
        return "gguf"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        fits = size is None or 8 + n <= size
        if 2 <= n <= MAX_SAFETENSORS_HEADER_BYTES and fits and head[8:9] == b"{":
            return "safetensors"
    return "other"


def sniff(path: str | Path) -> str:
    """One of safetensors, pickle, torch-zip, zip, zip-unlistable, gguf, npy, onnx,
    lfs-pointer, other."""
    p = Path(path)
    with p.open("rb") as fh:
        head = fh.read(HEAD)
        size = os.fstat(fh.fileno()).st_size
    kind = sniff_bytes(head, size)
    if kind == "zip":
        # torch.save (>= 1.6) writes a zip whose data.pkl is a pickle; any
        # archive carrying a pickle executes code when loaded the same way.
        import zipfile  # only for archives: verify's start-up does not pay for it

        try:
            with zipfile.ZipFile(p) as zf:
                names = zf.namelist()
        except zipfile.BadZipFile:
            return "other"  # a local header with no archive behind it
        except (OSError, NotImplementedError, ValueError, EOFError):
            # Python cannot list it (unknown zip version, bad names), but torch's
            # own zip reader may still load a pickle from it: assume the worst.
            return "zip-unlistable"
        if any(n.endswith(".pkl") for n in names):
            return "torch-zip"
        return "zip"
    if kind == "other" and p.suffix == ".onnx" and head[:1] == b"\x08":
        return "onnx"  # protobuf field 1 (ir_version); ONNX has no magic number
    return kind


def is_pickle_like(kind: str) -> bool:
    return kind in PICKLE_KINDS


def is_weight_file(path: str | Path) -> bool:
    """True for files that hold weights by extension or by content."""
    p = Path(path)
    if p.suffix.lower() in WEIGHT_EXTENSIONS:
        return True
    try:
        return sniff(p) in WEIGHT_KINDS
    except OSError:
        return False
