"""Fuzz targets, one per parser of untrusted bytes: only this project's errors, never a hang.

Each target starts from a valid document (a real signed envelope, a real
safetensors header, a real ComfyUI workflow from ``tests/data``, an LFS
pointer) and feeds the parser byte-level mutations of it plus structured
junk. The property: the parser returns, or raises a ``UsageError`` /
``VerificationError`` subclass (one line for the user); any other exception
is a bug. In ``make test`` each target runs ``SONIC_FUZZ_EXAMPLES`` examples
(default 150, a few seconds); for a long run::

    SONIC_FUZZ_EXAMPLES=200000 .venv/bin/pytest tests/test_fuzz.py -p no:xdist -p no:randomly

(docs/security.md, "How it is tested").
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonic_registry.bundle import verify_envelope
from sonic_registry.errors import SonicRegistryError, UsageError, VerificationError
from sonic_registry.lfs import format_pointer, parse_pointer
from sonic_registry.safetensors_header import parse_header
from sonic_registry.signing import Envelope
from sonic_registry.trust import TrustStore
from sonic_registry.workflows import parse_graph_bytes

EXAMPLES = int(os.environ.get("SONIC_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
WORKFLOW = Path(__file__).parent / "data/workflows/smthemex-ComfyUI_Sonic/20250211.json"


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """``seed`` with a few random flips, insertions, deletions and splices of JSON-ish tokens."""
    data = bytearray(seed)
    tokens = [b"{", b"}", b"[", b"]", b'"', b",", b":", b"\\u0000", b"\\ud800", b"1e400",
              b"-1", b"null", b"\x00", b"\n", b"\t", b" " * 8, b"\xff", b"9" * 30]  # fmt: skip
    for _ in range(draw(st.integers(1, 8))):
        if not data:
            data += draw(st.binary(min_size=1, max_size=8))
            continue
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "insert", "delete", "token", "truncate"]))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "token":
            data[at:at] = draw(st.sampled_from(tokens))
        else:
            del data[at:]
    return bytes(data)


def _only_our_errors(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except (UsageError, VerificationError) as exc:
        assert isinstance(exc, SonicRegistryError) and str(exc)


# --- envelope ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def signed_envelope(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, TrustStore]:
    from helpers import SONIC_ROLES, release_toml, weight_bytes, write_safetensors

    from sonic_registry.bundle import sign_bundle
    from sonic_registry.signing import generate_key

    root = tmp_path_factory.mktemp("fuzz") / "m"
    for role, name in SONIC_ROLES.items():
        write_safetensors(root / name, {"w": weight_bytes(role)})
    (root / "release.toml").write_text(release_toml())
    key = generate_key()
    sign_bundle(root, key)
    return (root / "release.dsse.json").read_bytes(), TrustStore.from_public_keys([key.public])


@FUZZ
@given(data=st.data())
def test_fuzz_envelope(signed_envelope: tuple[bytes, TrustStore], data: st.DataObject) -> None:
    seed, store = signed_envelope
    raw = data.draw(mutated(seed))

    def run() -> None:
        env = Envelope.from_json(raw)
        # allow_unsigned reaches the payload parser even when the signature broke.
        verify_envelope(env, store, allow_unsigned=True)

    _only_our_errors(run)


@FUZZ
@given(data=st.data())
def test_fuzz_envelope_payload(
    signed_envelope: tuple[bytes, TrustStore], data: st.DataObject
) -> None:
    seed, store = signed_envelope
    payload = Envelope.from_json(seed).payload
    env = Envelope(payload=data.draw(mutated(payload)))
    _only_our_errors(lambda: verify_envelope(env, store, allow_unsigned=True))


# --- safetensors header -------------------------------------------------------------

_HEADER = json.dumps(
    {
        "__metadata__": {"format": "pt"},
        "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "b": {"dtype": "BF16", "shape": [0, 3], "data_offsets": [16, 16]},
        "c": {"dtype": "U8", "shape": [4], "data_offsets": [16, 20]},
    }
).encode()
_ST_SEED = struct.pack("<Q", len(_HEADER)) + _HEADER + bytes(20)


@FUZZ
@given(data=st.data())
def test_fuzz_safetensors_header(data: st.DataObject) -> None:
    blob = data.draw(mutated(_ST_SEED))
    _only_our_errors(lambda: parse_header(blob, len(blob)))


# --- workflow -------------------------------------------------------------------------


@FUZZ
@given(data=st.data(), name=st.sampled_from(["w.json", "w.toml", "w"]))
def test_fuzz_workflow(data: st.DataObject, name: str) -> None:
    seed = WORKFLOW.read_bytes() if name != "w.toml" else b'[nodes.a]\ntype = "SONIC"\n'
    raw = data.draw(mutated(seed))
    _only_our_errors(lambda: parse_graph_bytes(raw, source=name))


# --- LFS pointer ----------------------------------------------------------------------


@FUZZ
@given(data=st.data())
def test_fuzz_lfs_pointer(data: st.DataObject) -> None:
    raw = data.draw(mutated(format_pointer("ab" * 32, 1234)))
    _only_our_errors(lambda: parse_pointer(raw))


def test_seeds_are_valid(signed_envelope: tuple[bytes, TrustStore]) -> None:
    """The targets start from documents that parse, so mutations explore near-valid input."""
    seed, store = signed_envelope
    assert verify_envelope(Envelope.from_json(seed), store).channel == "official"
    assert parse_header(_ST_SEED, len(_ST_SEED))[1]["a"].shape == (2, 2)
    assert parse_graph_bytes(WORKFLOW.read_bytes(), source=WORKFLOW.name)
    assert parse_pointer(format_pointer("ab" * 32, 1234)).size == 1234
