"""docs/architecture.md lists every module of ``sonic_registry/``, and nothing that is gone.

The module map is where a reader looks up which file holds a rule; a module
added or removed without it would make the map quietly wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "sonic_registry"
DOC = ROOT / "docs" / "architecture.md"


def _modules() -> set[str]:
    return {
        p.relative_to(PACKAGE).as_posix()
        for p in PACKAGE.rglob("*.py")
        if "__pycache__" not in p.parts
    }


def _listed() -> set[str]:
    """The first cell of every module-map row: ``| `path.py` | ... |``."""
    return set(re.findall(r"^\| `([^`]+\.py)` \|", DOC.read_text(encoding="utf-8"), re.M))


def test_every_module_is_in_the_map() -> None:
    missing = sorted(_modules() - _listed())
    assert not missing, f"docs/architecture.md has no row for: {', '.join(missing)}"


def test_every_row_names_a_module_that_exists() -> None:
    stale = sorted(_listed() - _modules())
    assert not stale, f"docs/architecture.md lists modules that do not exist: {', '.join(stale)}"
