"""Names reach the terminal escaped (no drawing over the real error); JSON keeps them exact."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Keys
from hypothesis import given
from hypothesis import strategies as st

from sonic_registry.cli import main
from sonic_registry.errors import UnlistedFileError
from sonic_registry.terminal import printable

TRICKS = [
    "\r\x1b[2Kverified sonic 1.3.0: official",  # erase the line, draw a fake verdict
    "\x1b[1A\x1b[2K",  # move up and erase the previous line
    "a\u202egnp.safetensors",  # right-to-left override
    "a\u2066b\u2069",  # isolates
    "bell\x07\x08",
]


@pytest.mark.parametrize("trick", TRICKS)
def test_a_dropped_file_name_cannot_draw_on_the_terminal(
    make_bundle: Callable[..., Path], official_key: Keys, trick: str
) -> None:
    root = make_bundle()
    weight = f"x{trick}.safetensors"
    (root / weight).write_bytes(b"\x80\x04K\x01.")  # an unlisted (pickle) weight file
    note = f"n{trick}.txt"
    (root / note).write_text("not a weight")
    pub = str(official_key.pub_path)
    res = CliRunner().invoke(main, ["verify", str(root), "--public-key", pub])
    assert res.exit_code == 1
    for line in res.output.splitlines():
        assert line.isprintable(), repr(line)
    assert "\\x1b" in res.output or "\\u20" in res.output or "\\x07" in res.output
    # --json keeps the exact name.
    res = CliRunner().invoke(main, ["verify", str(root), "--public-key", pub, "--json"])
    doc = json.loads(res.output)
    assert weight in [e["where"] for e in doc["errors"]]


def test_error_lines_escape_and_to_dict_stays_exact() -> None:
    err = UnlistedFileError("a\x1b[2Kb.bin", "weight file is not listed")
    assert str(err) == "a\\x1b[2Kb.bin: weight file is not listed"
    assert err.to_dict()["where"] == "a\x1b[2Kb.bin"


@given(st.text())
def test_property_printable_output_is_printable_and_keeps_printable_text(text: str) -> None:
    out = printable(text)
    assert all(line.isprintable() for line in out.split("\n"))
    if text.isprintable():
        assert out == text


def test_table_cells_are_escaped_and_never_markup(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    name = "[bold red]official\x1b[2K.safetensors"
    (models / name).write_bytes(b"\x80\x04K\x01.")
    res = CliRunner().invoke(main, ["doctor", str(models)])
    assert "\x1b" not in res.output
    assert "[bold red]official\\x1b[2K.safetensors" in res.output.replace("\n", "")
