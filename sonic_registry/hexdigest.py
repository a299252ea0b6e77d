"""A sha256 written as text: 64 lowercase hex digits, checked by one function.

The catalog, the OMS bundle parser, the generation log and ``convert --sha256``
all accept a digest as text; they check it here so that none accepts an
uppercase, short or newline-terminated digest another would refuse.
"""

from __future__ import annotations

import re
from typing import TypeGuard

__all__ = ["SHA256_HEX", "is_sha256_hex"]

#: Exactly how a sha256 is written everywhere in Sonic's files (use ``fullmatch``).
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def is_sha256_hex(value: object) -> TypeGuard[str]:
    """True for a ``str`` of exactly 64 lowercase hex digits (no trailing newline).

    >>> is_sha256_hex("ab" * 32), is_sha256_hex("AB" * 32), is_sha256_hex("ab" * 32 + "\\n")
    (True, False, False)
    """
    return isinstance(value, str) and SHA256_HEX.fullmatch(value) is not None
