"""What a weight file says about itself, read without loading it.

Two clues help a verdict on a file no release lists:

* the **tensor names** of a torch checkpoint. They are plain strings in the
  pickle (``data.pkl`` of a torch zip, or the first pickle of a legacy file),
  so :mod:`pickletools` lists them by walking opcodes: nothing is ever
  unpickled, no code runs. A UNet with a second audio IP-adapter key set
  (``attn2.processor.to_k_ip.1``) is a ComfyUI_DICE_Talk UNet (audio + emotion
  adapters), which Sonic's ``strict=True`` load refuses (ComfyUI_Sonic #109);
* the ``__metadata__`` that ``sonic-registry convert`` writes into a
  safetensors file: the name, size and sha256 of the pickle it came from.

    >>> import pickle
    >>> sorted(pickle_strings_of(pickle.dumps({"a.to_k_ip.1.weight": 1}, protocol=2)))
    ['a.to_k_ip.1.weight']
"""

from __future__ import annotations

import pickletools
import zipfile
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "MAX_PICKLE_BYTES",
    "ConvertedFrom",
    "converted_from",
    "lookalike_reason",
    "pickle_strings",
    "pickle_strings_of",
]

#: The largest pickle stream read for its names (a UNet's data.pkl is ~1 MB).
MAX_PICKLE_BYTES = 64 << 20
_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING"}
)
#: (a key fragment, why a file with it is not Sonic's UNet)
_LOOKALIKES = (
    (
        "to_k_ip.1",
        "it has a second audio IP-adapter key set (to_k_ip.1): it looks like a "
        "ComfyUI_DICE_Talk UNet, which Sonic's strict load refuses (ComfyUI_Sonic #109)",
    ),
)


def pickle_strings_of(data: bytes) -> set[str]:
    """Every string constant in the first pickle of ``data`` (opcodes walked, never run)."""
    found: set[str] = set()
    try:
        for op, arg, _pos in pickletools.genops(data):
            if op.name in _STRING_OPS and isinstance(arg, str | bytes):
                found.add(arg if isinstance(arg, str) else arg.decode("latin-1"))
    except (ValueError, EOFError, UnicodeDecodeError, IndexError, KeyError):
        pass  # a truncated or odd stream: the names read so far still count
    return found


def pickle_strings(path: str | Path, fmt: str) -> set[str]:
    """String constants of a torch zip's ``data.pkl`` or of a plain pickle file."""
    p = Path(path)
    try:
        if fmt == "torch-zip":
            with zipfile.ZipFile(p) as zf:
                info = next((i for i in zf.infolist() if i.filename.endswith("data.pkl")), None)
                if info is None or info.file_size > MAX_PICKLE_BYTES:
                    return set()
                return pickle_strings_of(zf.read(info))
        if fmt == "pickle":
            with p.open("rb") as fh:
                return pickle_strings_of(fh.read(MAX_PICKLE_BYTES))
    except (OSError, zipfile.BadZipFile, NotImplementedError, ValueError):
        return set()
    return set()


def lookalike_reason(path: str | Path, fmt: str) -> str | None:
    """Why a pickle UNet is not Sonic's, from its tensor names; None when nothing tells."""
    names = pickle_strings(path, fmt)
    for fragment, reason in _LOOKALIKES:
        if any(fragment in n for n in names):
            return reason
    return None


@dataclass(frozen=True, slots=True)
class ConvertedFrom:
    """The pickle a ``sonic-registry convert`` output says it was made from."""

    name: str
    size: int
    sha256: str


def converted_from(path: str | Path) -> ConvertedFrom | None:
    """The source recorded by ``convert`` in a safetensors header, or None."""
    from .errors import SonicRegistryError
    from .hexdigest import is_sha256_hex
    from .loader import MAX_HEADER_BYTES, parse_safetensors_header

    p = Path(path)
    try:
        with p.open("rb") as fh:
            size = p.stat().st_size
            head = fh.read(8)
            n = int.from_bytes(head, "little")
            if len(head) < 8 or n > MAX_HEADER_BYTES:
                return None
            head += fh.read(n)
        _, _, meta = parse_safetensors_header(head, size, where=str(p))
    except (OSError, SonicRegistryError):
        return None
    sha, name, src_size = (
        meta.get("source_sha256"),
        meta.get("source_name"),
        meta.get("source_size"),
    )
    if not (is_sha256_hex(sha) and name and src_size and src_size.isdigit()):
        return None
    return ConvertedFrom(name, int(src_size), sha)
