"""The jsonschema-free fast path never calls valid what jsonschema would refuse.

``sonic_registry._schema_fast.conforms`` lets ``verify`` skip importing
jsonschema for valid documents (a start-up cost the benchmark found). It may be
stricter than the schema, never laxer: these tests mutate the golden files at
random and check that every document it accepts, jsonschema accepts too.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from sonic_registry._schema_fast import conforms
from sonic_registry.schema import SCHEMAS, _schema

GOLDEN = Path(__file__).parent / "golden"


def _goldens() -> dict[str, Any]:
    envelope = json.loads((GOLDEN / "release.dsse.json").read_text())
    return {
        "envelope": envelope,
        "statement": json.loads(base64.b64decode(envelope["payload"])),
        "trust": json.loads((GOLDEN / "trust.json").read_text()),
        "release-toml": tomllib.loads((GOLDEN / "release.toml").read_text()),
    }


DOCS = _goldens()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "official", "community", "sonic", "a" * 64, "0" * 64, "x\n"])
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, Any]:
    name = draw(st.sampled_from(sorted(DOCS)))
    doc = copy.deepcopy(DOCS[name])
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        if not path:
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(json_values)
    return name, doc


def test_goldens_take_the_fast_path() -> None:
    assert set(DOCS) == set(SCHEMAS)
    for name, doc in DOCS.items():
        assert conforms(doc, _schema(name)), name


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fast_path_is_never_laxer_than_jsonschema(case: tuple[str, Any]) -> None:
    name, doc = case
    if conforms(doc, _schema(name)):
        errors = list(Draft202012Validator(_schema(name)).iter_errors(doc))
        assert errors == [], (name, errors[0].message)


def test_shipped_schemas_are_valid_draft_2020_12() -> None:
    # validate() no longer checks the schemas on every start-up; this does.
    for name in SCHEMAS:
        Draft202012Validator.check_schema(_schema(name))


def test_verify_of_a_valid_bundle_does_not_import_jsonschema(
    make_bundle: Any, official_key: Any
) -> None:
    root = make_bundle()
    pub = str(official_key.pub_path)
    code = (
        "import sys\n"
        "from sonic_registry.bundle import verify_bundle\n"
        "from sonic_registry.signing import load_public_key\n"
        f"verify_bundle({str(root)!r}, public_keys=[load_public_key({pub!r})])\n"
        "print('jsonschema' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
