"""Property tests: canonical JSON round-trips, and no single signed byte can change unnoticed."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
from helpers import SONIC_ROLES, release_toml, weight_bytes, write_safetensors
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sonic_registry.bundle import sign_bundle, verify_bundle
from sonic_registry.canonical import canonical_bytes, loads_strict
from sonic_registry.errors import InvalidManifest, UsageError, VerificationError
from sonic_registry.signing import generate_key

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    # I-JSON (RFC 7493) numbers: what RFC 8785 defines canonical forms for
    | st.floats(min_value=-(2.0**53) + 1, max_value=2.0**53 - 1, allow_nan=False, width=64)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_values)
def test_canonical_json_round_trips(value) -> None:
    once = canonical_bytes(value)
    parsed = loads_strict(once)
    assert canonical_bytes(parsed) == once  # idempotent
    assert parsed == json.loads(once)  # standard JSON, readable by anyone


def test_numbers_outside_ijson_are_a_clear_error() -> None:
    with pytest.raises(InvalidManifest, match="exceeds safe integer domain"):
        canonical_bytes({"n": 2**60})


@given(st.dictionaries(st.text(max_size=8), st.integers(-(2**53) + 1, 2**53 - 1), min_size=2))
def test_canonical_json_ignores_key_order(d) -> None:
    reordered = dict(reversed(list(d.items())))
    assert canonical_bytes(d) == canonical_bytes(reordered)


_KEY = generate_key()


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One signed bundle per worker, in pytest's own temp dir (cleaned up like tmp_path)."""
    root = tmp_path_factory.mktemp("signed") / "bundle"
    for role, name in SONIC_ROLES.items():
        write_safetensors(root / name, {"w": weight_bytes(role, 64)})
    (root / "release.toml").write_text(release_toml())
    sign_bundle(root, _KEY)
    return root


SIGNED_FILES = [*SONIC_ROLES.values(), "release.toml", "release.dsse.json"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(SIGNED_FILES),
    position=st.floats(min_value=0, max_value=1, exclude_max=True),
    mask=st.integers(min_value=1, max_value=255),
)
def test_any_single_byte_change_is_detected(
    signed: Path, name: str, position: float, mask: int
) -> None:
    """Flip any bits of any byte of any signed file (or of the envelope's payload/signature)."""
    with tempfile.TemporaryDirectory(prefix="sonic-flip-") as work:
        root = Path(work) / "b"
        shutil.copytree(signed, root)
        target = root / name
        if name == "release.dsse.json":
            # Change the decoded payload or signature bytes, re-encoded validly,
            # so the check is on signed bytes, not on base64 syntax.
            env = json.loads(target.read_text())
            import base64

            field = "payload" if position < 0.5 else "sig"
            holder = env if field == "payload" else env["signatures"][0]
            raw = bytearray(base64.b64decode(holder[field]))
            raw[int((position % 0.5) * 2 * len(raw))] ^= mask
            holder[field] = base64.b64encode(bytes(raw)).decode()
            target.write_text(json.dumps(env))
        else:
            data = bytearray(target.read_bytes())
            data[int(position * len(data))] ^= mask
            target.write_bytes(bytes(data))
        with pytest.raises((VerificationError, InvalidManifest, UsageError)):
            verify_bundle(root, public_keys=[_KEY.public])


def test_the_unmodified_copy_verifies(signed: Path, tmp_path: Path) -> None:
    # Guard for the property above: without a change, the same procedure passes.
    shutil.copytree(signed, tmp_path / "b")
    assert verify_bundle(tmp_path / "b", public_keys=[_KEY.public]).channel == "official"
