"""Git LFS pointer files: parse them strictly and compare them to a signed digest.

In a repository that tracks weights with Git LFS, a checkout without
``git lfs pull`` (and the index itself) holds a small text file instead of the
weights::

    version https://git-lfs.github.com/spec/v1
    oid sha256:4d7a2146...<64 hex>
    size 12345

The LFS oid *is* the SHA-256 of the real file, so a pointer can be checked
against a signed subject without its content: the oid must equal the signed
sha256 and ``size`` the signed size. The parser follows the spec
(https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md) strictly, because a
lenient parser is how a pointer that git-lfs itself would read differently gets
past a check: ``version`` first, then the other keys in sorted order, one
``key value`` per LF-terminated line, no duplicates, less than 1024 bytes.

    >>> p = parse_pointer(format_pointer("a" * 64, 3))
    >>> (p.oid, p.size)
    ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 3)
    >>> parse_pointer(b"version https://git-lfs.github.com/spec/v1\\nsize 3\\n")
    Traceback (most recent call last):
    ...
    sonic_registry.errors.InvalidManifest: pointer: oid: expected 'oid sha256:<64 hex>', found none
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DigestMismatchError, InvalidManifest

__all__ = [
    "LFS_VERSION",
    "MAX_POINTER_SIZE",
    "LfsPointer",
    "check_pointer",
    "format_pointer",
    "is_pointer",
    "lfs_object_path",
    "parse_pointer",
    "read_pointer",
]

LFS_VERSION = "https://git-lfs.github.com/spec/v1"
#: Older clients wrote this version URL; git-lfs still reads it.
_LEGACY_VERSION = "https://hawser.github.com/spec/v1"
_MAGICS = (f"version {LFS_VERSION}\n".encode(), f"version {_LEGACY_VERSION}\n".encode())
#: The spec: "Pointer files must be less than 1024 bytes in size."
MAX_POINTER_SIZE = 1024

_KEY = re.compile(r"[a-z0-9.-]+")
_OID = re.compile(r"sha256:([0-9a-f]{64})")
_SIZE = re.compile(r"0|[1-9][0-9]*")
_EXT = re.compile(r"ext-[0-9]-[a-z0-9]+")


@dataclass(frozen=True, slots=True)
class LfsPointer:
    """What a pointer file claims: the SHA-256 (oid) and size of the real content."""

    oid: str
    size: int


def is_pointer(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) starts like an LFS pointer."""
    return head.startswith(_MAGICS)


def parse_pointer(data: bytes, *, where: str = "pointer") -> LfsPointer:
    """Parse pointer text; raise :class:`InvalidManifest` naming the bad line."""

    def bad(field: str, message: str) -> InvalidManifest:
        return InvalidManifest(field, message, path=where)

    if len(data) >= MAX_POINTER_SIZE:
        raise bad("", f"expected an LFS pointer under {MAX_POINTER_SIZE} bytes, found {len(data)}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise bad("", "expected UTF-8 pointer text") from exc
    if not text.endswith("\n"):
        raise bad("", "expected every pointer line to end with a newline")
    fields: dict[str, str] = {}
    previous = ""
    for number, line in enumerate(text[:-1].split("\n"), start=1):
        key, sep, value = line.partition(" ")
        if not sep or not _KEY.fullmatch(key) or not value or "\r" in line:
            raise bad(f"line {number}", f"expected 'key value', found {line[:40]!r}")
        if number == 1:
            if key != "version":
                raise bad("version", f"expected the version line first, found {key!r}")
            if value not in (LFS_VERSION, _LEGACY_VERSION):
                raise bad("version", f"expected {LFS_VERSION}, found {value[:60]!r}")
        elif key == "version" or key in fields:
            raise bad(key, "expected each key once")
        elif key <= previous:
            raise bad(key, f"expected keys in sorted order, found {key!r} after {previous!r}")
        elif key not in ("oid", "size") and not _EXT.fullmatch(key):
            raise bad(key, "expected only version, oid, size and ext-N-name keys")
        fields[key] = value
        previous = key if number > 1 else ""
    oid = _OID.fullmatch(fields.get("oid", ""))
    if oid is None:
        found = repr(fields["oid"][:72]) if "oid" in fields else "none"
        raise bad("oid", f"expected 'oid sha256:<64 hex>', found {found}")
    size = fields.get("size", "")
    if not _SIZE.fullmatch(size):
        raise bad("size", f"expected a non-negative integer, found {size[:40]!r}")
    return LfsPointer(oid.group(1), int(size))


def format_pointer(oid: str, size: int) -> bytes:
    """The canonical pointer text git-lfs writes for content with this sha256 and size."""
    if not _OID.fullmatch(f"sha256:{oid}") or size < 0:
        raise ValueError(f"expected a sha256 hex digest and a size >= 0, found {oid!r}, {size}")
    return f"version {LFS_VERSION}\noid sha256:{oid}\nsize {size}\n".encode()


def read_pointer(path: str | Path) -> LfsPointer | None:
    """The pointer stored in ``path``, or None when the file is not a pointer.

    A file that starts like a pointer but is malformed raises: it is neither the
    weights nor a pointer to them.
    """
    with open(path, "rb") as fh:
        head = fh.read(MAX_POINTER_SIZE + 1)
    if not is_pointer(head):
        return None
    return parse_pointer(head, where=str(path))


def check_pointer(
    pointer: LfsPointer, sha256: str, size: int, *, name: str
) -> DigestMismatchError | None:
    """The problem with this pointer standing in for a signed file, or None."""
    if pointer.oid != sha256:
        return DigestMismatchError(
            name, f"LFS pointer oid: expected sha256:{sha256[:16]}..., found {pointer.oid[:16]}..."
        )
    if pointer.size != size:
        return DigestMismatchError(
            name, f"LFS pointer size: expected {size} bytes, found {pointer.size}"
        )
    return None


def lfs_object_path(git_dir: str | Path, oid: str) -> Path | None:
    """Where git-lfs keeps the content for ``oid`` locally, if it has been fetched."""
    p = Path(git_dir) / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    return p if os.path.isfile(p) else None
