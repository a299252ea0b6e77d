"""Text that reaches a terminal: control and bidi characters escaped, so a name cannot draw.

File, subject, tensor and key names come from untrusted bundles. Printed raw, a
name holding ``ESC[2K`` or ``\\r`` can erase the line and draw a fake "verified
... official" over the real error, and a bidi override (U+202E) can reverse
what follows. Every human-readable line goes through :func:`printable`; JSON
output does not (``json.dumps`` writes ASCII escapes, so it stays exact).

    >>> printable("unet\\x1b[2K.safetensors")
    'unet\\\\x1b[2K.safetensors'
    >>> printable("a\\u202eb")
    'a\\\\u202eb'
"""

from __future__ import annotations

__all__ = ["printable"]


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character (controls, bidi, lone surrogates)
    escaped as ``\\xNN``/``\\uNNNN``; newlines between lines are kept."""
    if text.isprintable():
        return text
    # Lines are checked whole first (C speed): a batch of 10,000 plain lines
    # (``registry list``) costs a few ms instead of one Python call per character.
    return "\n".join(
        line if line.isprintable() else "".join(c if c.isprintable() else _escape(c) for c in line)
        for line in text.split("\n")
    )
