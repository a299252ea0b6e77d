"""A conservative JSON Schema check that answers "certainly valid" without jsonschema.

Why: importing ``jsonschema`` (with ``referencing``, ``attrs``, ``rpds`` and its
format checkers) costs about 0.15 s of CPU, more than ``sonic-registry verify``
spends on everything else for a small model, and every verify validates the
envelope and the statement. Valid documents are by far the common case, so
:func:`schema.validate <sonic_registry.schema.validate>` asks this module first
and imports ``jsonschema`` only when the answer is not a certain "valid" (then
jsonschema produces the exact error message, as before).

The rule that keeps behaviour identical: :func:`conforms` returns True only
when jsonschema's Draft 2020-12 validator would accept the instance. Anything
it does not model exactly (an unknown keyword, a remote ``$ref``, ``const`` of
a non-string, a float where an integer is expected ...) answers False, which
merely means "ask jsonschema". It may be stricter than the schema, never laxer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from typing import Any

__all__ = ["conforms"]

#: Keywords that never affect validity.
_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description"})

_TYPES: Mapping[str, Any] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    # jsonschema also accepts 1.0 as an integer; refusing it here only means "ask jsonschema".
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) in (int, float),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


@cache
def ecma_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled with JSON Schema's (ECMA-262) meaning of a final ``$``: end of text.

    Python's ``$`` also matches before a trailing newline, so ``^[0-9a-f]{64}$``
    would accept a digest with ``\\n`` after it; ``\\Z`` does not.
    """
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


_regex = ecma_regex


def conforms(instance: Any, schema: Mapping[str, Any]) -> bool:
    """True only if ``instance`` certainly satisfies ``schema`` (False: unknown or invalid)."""
    return _check(instance, schema, schema)


def _check(value: Any, schema: Any, root: Mapping[str, Any]) -> bool:
    if schema is True:
        return True
    if not isinstance(schema, dict):
        return False
    for key, arg in schema.items():
        if key in _ANNOTATIONS or key in ("properties", "patternProperties"):
            continue  # properties are checked with additionalProperties below
        if key == "type":
            names = arg if isinstance(arg, list) else [arg]
            if not any(n in _TYPES and _TYPES[n](value) for n in names):
                return False
        elif key == "$ref":
            target = _resolve(arg, root)
            if target is None or not _check(value, target, root):
                return False
        elif key == "const":
            if not (isinstance(arg, str) and isinstance(value, str) and value == arg):
                return False
        elif key == "enum":
            if not (isinstance(value, str) and all(isinstance(e, str) for e in arg)):
                return False
            if value not in arg:
                return False
        elif key == "required":
            if isinstance(value, dict) and not all(k in value for k in arg):
                return False
        elif key == "additionalProperties":
            continue  # handled with properties below
        elif key in ("minLength", "maxLength"):
            if isinstance(value, str) and not _within(len(value), key, arg):
                return False
        elif key in ("minItems", "maxItems"):
            if isinstance(value, list) and not _within(len(value), key, arg):
                return False
        elif key in ("minProperties", "maxProperties"):
            if isinstance(value, dict) and not _within(len(value), key, arg):
                return False
        elif key in ("minimum", "maximum"):
            if isinstance(value, bool):
                return False
            if isinstance(value, int | float) and not _within(value, key, arg):
                return False
        elif key == "pattern":
            # jsonschema uses re.search too (so "$" also matches before a final newline).
            if isinstance(value, str) and not _regex(arg).search(value):
                return False
        elif key == "items":
            if isinstance(value, list) and not all(_check(v, arg, root) for v in value):
                return False
        elif key == "uniqueItems":
            if (
                arg is True
                and isinstance(value, list)
                and (not all(isinstance(v, str) for v in value) or len(set(value)) != len(value))
            ):
                return False
        elif key == "propertyNames":
            if isinstance(value, dict) and not all(_check(k, arg, root) for k in value):
                return False
        elif key == "oneOf":
            # Exact only for subschemas made of "required" (true/false, no "unknown").
            if not all(isinstance(s, dict) and set(s) <= {"required"} for s in arg):
                return False
            if isinstance(value, dict):
                hits = sum(all(k in value for k in s.get("required", ())) for s in arg)
                if hits != 1:
                    return False
            else:
                if len(arg) != 1:
                    return False
        else:
            return False  # a keyword we do not model: let jsonschema decide
    return _check_properties(value, schema, root) if isinstance(value, dict) else True


def _check_properties(value: dict[str, Any], schema: Mapping[str, Any], root: Any) -> bool:
    props = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    extra = schema.get("additionalProperties", True)
    if not isinstance(props, dict) or not isinstance(patterns, dict):
        return False
    for k, v in value.items():
        matched = False
        if k in props:
            matched = True
            if not _check(v, props[k], root):
                return False
        for pattern, sub in patterns.items():
            if _regex(pattern).search(k):
                matched = True
                if not _check(v, sub, root):
                    return False
        if not matched and not _check(v, extra, root):
            return False
    return True


def _within(n: float, key: str, limit: Any) -> bool:
    if type(limit) not in (int, float):
        return False
    return bool(n >= limit) if key.startswith("min") else bool(n <= limit)


def _resolve(ref: Any, root: Mapping[str, Any]) -> Any:
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return None
    node: Any = root
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
