"""DESIGN.md's path-name rules at sign and verify, and hard links (warn; refuse under --strict)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Keys
from hypothesis import given
from hypothesis import strategies as st

from sonic_registry.bundle import sign_bundle, verify_bundle
from sonic_registry.canonical import canonical_bytes
from sonic_registry.cli import main
from sonic_registry.errors import InvalidManifest, UnsafePathError
from sonic_registry.manifest import check_relative_path, path_problem
from sonic_registry.signing import Envelope

BAD_NAMES = [
    ".",
    "a/./b",
    "a/b.",
    "model.",
    "unet.safetensors:stream",
    "CON",
    "nul.json",
    "Lpt9.bin",
    "com1/unet.safetensors",
    "a\x1bb",
    "a\tb",
    "a\u202eb",
    "cafe\u0301.bin",  # not NFC
    "a b",
    "a//b",
    "../x",
    "/abs",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_names_are_refused(name: str) -> None:
    assert path_problem(name) is not None
    with pytest.raises(InvalidManifest):
        check_relative_path(name, field="subject.0.name")


@pytest.mark.parametrize("name", ["unet.safetensors", "a/b-c_d.1/e.json", "CONFIG.json", "x.CON"])
def test_portable_names_pass(name: str) -> None:
    assert path_problem(name) is None


@given(st.text(min_size=1, max_size=20))
def test_property_accepted_names_are_portable(name: str) -> None:
    if path_problem(name) is None:
        assert all(c.isascii() and (c.isalnum() or c in "._-/") for c in name)
        assert all(seg not in ("", ".", "..") and not seg.endswith(".") for seg in name.split("/"))


@pytest.mark.parametrize("name", ["NUL.json", "notes.", "cafe\u0301.txt", "a\x1b[2K.txt"])
def test_sign_refuses_a_bundle_file_with_a_bad_name(
    make_bundle: Callable[..., Path], official_key: Keys, name: str
) -> None:
    root = make_bundle(sign=False)
    (root / name).write_text("x")
    with pytest.raises(InvalidManifest, match="file"):
        sign_bundle(root, official_key.private)
    assert not (root / "release.dsse.json").exists()


def test_sign_refuses_names_equal_after_casefold(
    make_bundle: Callable[..., Path], official_key: Keys
) -> None:
    root = make_bundle(sign=False)
    (root / "README.md").write_text("a")
    (root / "readme.md").write_text("b")
    with pytest.raises(InvalidManifest, match="case folding"):
        sign_bundle(root, official_key.private)


def _resign_with_subject(root: Path, key: Keys, old: str, new: str) -> None:
    """A genuine signature over a payload whose subject name breaks the rules."""
    env = Envelope.from_json((root / "release.dsse.json").read_bytes())
    statement = json.loads(env.payload)
    for s in statement["subject"]:
        if s["name"] == old:
            s["name"] = new
    payload = canonical_bytes(statement)
    forged = Envelope(payload=payload).signed_by(key.private)
    (root / "release.dsse.json").write_bytes(forged.to_json())


@pytest.mark.parametrize("new", ["README.md.", "NUL.md", "READ\u200eME.md", "readme.MD"])
def test_verify_refuses_a_signed_subject_with_a_bad_name(
    make_bundle: Callable[..., Path], official_key: Keys, new: str
) -> None:
    root = make_bundle(sign=False)
    (root / "README.md").write_text("a")
    (root / "readme.md.txt").write_text("b")
    sign_bundle(root, official_key.private)
    if new == "readme.MD":  # two subjects equal after case folding
        _resign_with_subject(root, official_key, "readme.md.txt", "readme.MD")
        new_expect = "case folding"
    else:
        _resign_with_subject(root, official_key, "README.md", new)
        new_expect = "portable name"
    with pytest.raises(InvalidManifest, match=new_expect):
        verify_bundle(root, public_keys=[official_key.private.public])


# --- hard links ------------------------------------------------------------------


def test_hard_link_warns_and_strict_refuses(
    make_bundle: Callable[..., Path], official_key: Keys, tmp_path: Path
) -> None:
    root = make_bundle()
    os.link(root / "unet.safetensors", tmp_path / "elsewhere.bin")
    verified = verify_bundle(root, public_keys=[official_key.private.public])
    assert any("unet.safetensors: hard-linked (2 names)" in w for w in verified.warnings)
    with pytest.raises(UnsafePathError, match="hard-linked"):
        verify_bundle(root, public_keys=[official_key.private.public], strict=True)
    pub = str(official_key.pub_path)
    res = CliRunner().invoke(main, ["verify", str(root), "--public-key", pub])
    assert res.exit_code == 0 and "hard-linked" in res.output
    res = CliRunner().invoke(main, ["verify", str(root), "--public-key", pub, "--strict"])
    assert res.exit_code == 1 and "hard-linked" in res.output
