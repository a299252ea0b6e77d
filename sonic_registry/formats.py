"""What kind of file is this? Decided by content (magic bytes), never by name alone.

A ``.safetensors`` name on a pickle is still a pickle, and a ``unet.pth`` that is
really safetensors is safe. The order is strict: a file is safetensors only if
its header parses strictly (:mod:`sonic_registry.safetensors_header`), which is
decided first, so a valid file whose header length happens to read as pickle
opcodes (N = 640 is ``80 02``...) is not mistaken for a pickle. Only then are
magic bytes sniffed: pickles of every protocol (0 and 1 by walking their
opcodes with :mod:`pickletools`, which never executes them), torch's legacy
tar checkpoints and compressed wrappers (gzip, bz2, xz, 7z, zstd), all of
which ``torch.load(weights_only=False)`` can be made to run, count as
pickle-like. Nothing is ever unpickled.

    >>> sniff_bytes(b"\\x80\\x04\\x95")
    'pickle'
    >>> sniff_bytes(b"version https://git-lfs.github.com/spec/v1\\n")
    'lfs-pointer'
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from .constants import MAX_SAFETENSORS_HEADER_BYTES
from .errors import InvalidManifest
from .fileio import open_regular

__all__ = [
    "PICKLE_KINDS",
    "WEIGHT_EXTENSIONS",
    "WEIGHT_KINDS",
    "is_pickle_like",
    "is_weight_file",
    "sniff",
    "sniff_bytes",
]

#: Bytes sniffed (a tar's "ustar" magic sits at 257; text pickles need a few opcodes).
HEAD = 4096
LFS_MAGIC = b"version https://git-lfs.github.com/spec/v1"
#: Wrappers torch (or a user one step away from torch.load) unpacks to a pickle.
COMPRESSED_MAGIC = (
    b"\x1f\x8b",  # gzip
    b"BZh",  # bz2
    b"\xfd7zXZ\x00",  # xz
    b"7z\xbc\xaf\x27\x1c",  # 7z
    b"\x28\xb5\x2f\xfd",  # zstd
)
#: Valid opcodes a text pickle must reach (or STOP) before it counts as one.
_MIN_TEXT_PICKLE_OPS = 16
PICKLE_KINDS = frozenset({"pickle", "torch-zip", "zip-unlistable", "torch-tar", "compressed"})
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
    """Classify a file from its first bytes; ``size`` is the whole file's (default ``len(head)``).

    ``head`` must hold the whole safetensors header for a file to count as
    safetensors: the strict parse comes first.
    """
    if _is_safetensors(head, len(head) if size is None else size):
        return "safetensors"
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
    if head.startswith(COMPRESSED_MAGIC):
        return "compressed"
    if head[257:262] == b"ustar":
        return "torch-tar"  # torch's legacy format: a tar of "storages", "tensors", "pickle"
    if _is_text_pickle(head, whole=size is None or size <= len(head)):
        return "pickle"  # protocol 0/1: torch.save(..., pickle_protocol=0) and old pickles
    return "other"


def _is_safetensors(head: bytes, size: int) -> bool:
    from .safetensors_header import parse_header

    if len(head) < 10 or head[8:9] != b"{":
        return False
    try:
        parse_header(head, size)
    except InvalidManifest:
        return False
    return True


def _is_text_pickle(head: bytes, *, whole: bool) -> bool:
    """A protocol 0/1 pickle: opcodes of protocol <= 1 up to STOP, or (when ``head`` is only
    the start of the file) many of them up to its end. Walked with
    :func:`pickletools.genops`, which parses and never runs anything."""
    import pickletools  # only when no magic matched: verify's start-up does not pay for it

    count = 0
    try:
        for op, _, _ in pickletools.genops(io.BytesIO(head)):
            if op.proto > 1:
                return False
            count += 1
            if op.name == "STOP":
                return count >= 2
    except ValueError as exc:
        text = str(exc)
        truncated = any(m in text for m in ("not enough data", "no newline", "only", "exhausted"))
        return truncated and not whole and count >= _MIN_TEXT_PICKLE_OPS
    return False


def _head(path: Path) -> tuple[bytes, int]:
    """The first bytes of ``path``, and all of a plausible safetensors header; never blocks."""
    fd, st = open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        head = fh.read(HEAD)
        if len(head) >= 9 and head[8:9] == b"{":
            n = int.from_bytes(head[:8], "little")
            if len(head) < 8 + n <= st.st_size and n <= MAX_SAFETENSORS_HEADER_BYTES:
                head += fh.read(8 + n - len(head))
    return head, st.st_size


def sniff(path: str | Path) -> str:
    """One of safetensors, pickle, torch-zip, torch-tar, compressed, zip, zip-unlistable,
    gguf, npy, onnx, lfs-pointer, other."""
    p = Path(path)
    head, size = _head(p)
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
