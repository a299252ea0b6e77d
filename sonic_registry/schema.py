"""JSON Schema 2020-12 validation of every file format, with one-line errors.

The schemas in ``sonic_registry/schemas/`` are the single description of each
format's shape; the parsers in ``manifest``/``trust`` only add the checks a
schema cannot express (PEP 440 versions, range ordering, path safety).
``jsonschema`` is imported lazily so ``import sonic_registry`` stays light.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from ._schema_fast import conforms, ecma_regex
from .errors import InvalidManifest

__all__ = ["SCHEMAS", "validate"]

SCHEMAS = ("release-toml", "statement", "envelope", "trust")
_SCHEMA_DIR = Path(__file__).resolve().parent / "schemas"


@functools.cache
def _schema(name: str) -> Any:
    # The schemas ship as package data files beside this module; reading them
    # directly spares verify's start-up importlib.resources (and its zipfile).
    text = (_SCHEMA_DIR / f"{name}.schema.json").read_text("utf-8")
    return json.loads(text)


@functools.cache
def _validator(name: str) -> Any:
    """jsonschema's 2020-12 validator, made as strict as the fast path.

    Two differences from stock jsonschema, both holes an attacker used: an
    ``integer`` is an int (``1.0`` is refused, as in ``trust.json``'s
    ``version``), and a ``pattern`` ending in ``$`` means end of text, not
    "before a final newline" (digests with a trailing newline are refused).
    """
    from jsonschema import Draft202012Validator, ValidationError, validators

    def pattern(validator: Any, patrn: str, instance: Any, schema: Any) -> Any:
        if isinstance(instance, str) and not ecma_regex(patrn).search(instance):
            yield ValidationError(f"{instance!r} does not match {patrn!r}")

    strict = validators.extend(
        Draft202012Validator,
        validators={"pattern": pattern},
        type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
            "integer", lambda _checker, value: type(value) is int
        ),
    )
    schema = _schema(name)
    strict.check_schema(schema)
    return strict(schema)


def _field(path: Any) -> str:
    return ".".join(str(p) for p in path)


def _describe(error: Any) -> str:
    found = error.instance
    shown = repr(found) if not isinstance(found, dict | list) else type(found).__name__
    if len(shown) > 60:
        shown = shown[:57] + "..."
    validator = error.validator
    if validator == "type":
        return f"expected {error.validator_value}, found {shown}"
    if validator in ("enum", "const"):
        expected = error.validator_value
        options = expected if isinstance(expected, list) else [expected]
        return f"expected one of {', '.join(repr(o) for o in options)}, found {shown}"
    if validator == "required":
        return str(error.message).replace("is a required property", "is required").strip()
    if validator == "additionalProperties":
        return str(error.message)
    if validator == "pattern":
        return f"expected a value matching {error.validator_value}, found {shown}"
    if validator in ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems"):
        return f"expected {validator} {error.validator_value}, found {shown}"
    if validator == "oneOf" and isinstance(found, dict):
        return "expected exactly one of 'path' or 'paths'"
    return str(error.message)


def validate(instance: Any, name: str, *, where: str = "") -> None:
    """Raise :class:`InvalidManifest` naming the first field that breaks ``name``'s schema.

    >>> validate({"version": 1}, "trust", where="trust.json")
    Traceback (most recent call last):
    ...
    sonic_registry.errors.InvalidManifest: trust.json: 'keys' is required
    """
    # Fast path: a document that certainly conforms needs no jsonschema import
    # (0.15 s of CPU per process); anything else gets jsonschema's exact verdict.
    if conforms(instance, _schema(name)):
        return
    from jsonschema.exceptions import best_match

    error = best_match(_validator(name).iter_errors(instance))
    if error is None:
        return
    raise InvalidManifest(_field(error.absolute_path), _describe(error), path=where)
