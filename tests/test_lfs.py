"""Git LFS pointers: strict parsing and comparison with a signed digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sonic_registry.errors import InvalidManifest
from sonic_registry.lfs import (
    LfsPointer,
    check_pointer,
    format_pointer,
    is_pointer,
    lfs_object_path,
    parse_pointer,
    read_pointer,
)

OID = hashlib.sha256(b"weights").hexdigest()
V = b"version https://git-lfs.github.com/spec/v1\n"


@given(st.binary(max_size=64).map(lambda b: hashlib.sha256(b).hexdigest()), st.integers(0, 2**63))
def test_format_then_parse_round_trips(oid: str, size: int) -> None:
    text = format_pointer(oid, size)
    assert is_pointer(text)
    assert parse_pointer(text) == LfsPointer(oid, size)


def test_extension_keys_are_accepted_in_order() -> None:
    text = V + b"ext-0-foo sha256:" + b"1" * 64 + b"\noid sha256:" + OID.encode() + b"\nsize 7\n"
    assert parse_pointer(text) == LfsPointer(OID, 7)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        (b"oid sha256:" + OID.encode() + b"\n" + V + b"size 7\n", "version"),
        (V + b"size 7\n", "oid"),
        (V + b"oid sha256:" + OID.upper().encode() + b"\nsize 7\n", "oid"),
        (V + b"oid md5:" + OID[:32].encode() + b"\nsize 7\n", "oid"),
        (V + b"oid sha256:" + OID.encode() + b"\n", "size"),
        (V + b"oid sha256:" + OID.encode() + b"\nsize 07\n", "size"),
        (V + b"oid sha256:" + OID.encode() + b"\nsize -7\n", "size"),
        (V + b"size 7\noid sha256:" + OID.encode() + b"\n", "oid"),
        (V + b"oid sha256:" + OID.encode() + b"\noid sha256:" + OID.encode() + b"\n", "oid"),
        (V + b"oid sha256:" + OID.encode() + b"\nsize 7", ""),
        (V + b"oid sha256:" + OID.encode() + b"\r\nsize 7\n", "line 2"),
        (V + b"oid sha256:" + OID.encode() + b"\nsize 7\nzzz 1\n", "zzz"),
        (
            b"version https://example.com/spec\noid sha256:" + OID.encode() + b"\nsize 7\n",
            "version",
        ),
        (V + b"oid sha256:" + OID.encode() + b"\nsize 7\n" + b"x" * 1024, ""),
    ],
)
def test_malformed_pointers_are_refused_naming_the_field(text: bytes, field: str) -> None:
    with pytest.raises(InvalidManifest) as info:
        parse_pointer(text, where="w.safetensors")
    assert info.value.field == field
    assert str(info.value).startswith("w.safetensors")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_invalid_manifest(data: bytes) -> None:
    try:
        pointer = parse_pointer(V + data)
    except InvalidManifest:
        return
    assert len(pointer.oid) == 64 and pointer.size >= 0


def test_check_pointer_compares_oid_then_size() -> None:
    good = LfsPointer(OID, 7)
    assert check_pointer(good, OID, 7, name="a") is None
    wrong_oid = check_pointer(LfsPointer("0" * 64, 7), OID, 7, name="a")
    assert wrong_oid is not None and "LFS pointer oid" in str(wrong_oid)
    wrong_size = check_pointer(LfsPointer(OID, 8), OID, 7, name="a")
    assert wrong_size is not None and str(wrong_size) == (
        "a: LFS pointer size: expected 7 bytes, found 8"
    )


def test_read_pointer_and_local_object(tmp_path: Path) -> None:
    plain = tmp_path / "w.safetensors"
    plain.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    assert read_pointer(plain) is None
    ptr = tmp_path / "p.safetensors"
    ptr.write_bytes(format_pointer(OID, 7))
    assert read_pointer(ptr) == LfsPointer(OID, 7)
    git = tmp_path / ".git"
    assert lfs_object_path(git, OID) is None
    obj = git / "lfs" / "objects" / OID[:2] / OID[2:4] / OID
    obj.parent.mkdir(parents=True)
    obj.write_bytes(b"weights")
    assert lfs_object_path(git, OID) == obj
