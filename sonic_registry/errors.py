"""One exception tree, split by who is at fault.

* ``UsageError`` and its children: the input could not be read or parsed (the
  caller's file is malformed, missing, or of the wrong kind). The CLI maps these
  to exit code 2. Parse errors also subclass :class:`ValueError`, as
  pypa/packaging does, so ``except ValueError`` keeps working for callers that
  only care that "this is not a valid manifest".
* ``VerificationError`` and its children: the input was read fine, but it is not
  what a trusted key signed (or mixes releases, or needs another runtime). This
  is a verdict, exit code 1.

Every error renders as one line naming the file, the field, what was expected
and what was found::

    >>> str(InvalidManifest("version", "expected a PEP 440 version, found 'one'",
    ...                     path="model/release.toml"))
    "model/release.toml: version: expected a PEP 440 version, found 'one'"
    >>> str(DigestMismatchError("unet.safetensors", "expected sha256 ab12, found cd34"))
    'unet.safetensors: expected sha256 ab12, found cd34'
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

__all__ = [
    "BadSignatureError",
    "DigestMismatchError",
    "ExpiredReleaseError",
    "IncompatibleRuntimeError",
    "InterfaceMismatchError",
    "InvalidGraph",
    "InvalidKeyError",
    "InvalidManifest",
    "InvalidTrustStore",
    "MixedReleaseError",
    "ParameterRangeError",
    "RevokedKeyError",
    "RollbackError",
    "SonicRegistryError",
    "StaleRegistryError",
    "ThresholdNotMetError",
    "UnlistedFileError",
    "UnreadableInputError",
    "UnsafePathError",
    "UnsignedReleaseError",
    "UsageError",
    "VerificationError",
    "digest_mismatch",
    "raise_all",
    "size_mismatch",
    "with_all",
]


class SonicRegistryError(Exception):
    """Base of every error this library raises on purpose.

    ``where`` is the file (or file and field) the problem is about; ``detail``
    says what was expected and what was found.
    """

    exit_code = 2

    def __init__(self, where: str, detail: str) -> None:
        super().__init__(where, detail)
        self.where = where
        self.detail = detail
        #: Every problem found in the same check, this one first. A check that
        #: finds several raises one exception carrying all of them
        #: (:func:`raise_all`), so a plain ``except VerificationError`` still
        #: catches the verdict and the CLI prints one line each. This is the one
        #: way several problems are reported (never an ``ExceptionGroup``).
        self.problems: tuple[SonicRegistryError, ...] = (self,)

    def __str__(self) -> str:
        # A human-readable line: names in it are escaped (terminal.printable);
        # to_dict() keeps them exact for JSON.
        from .terminal import printable

        return printable(f"{self.where}: {self.detail}" if self.where else self.detail)

    def to_dict(self) -> dict[str, str]:
        """The same line as an object, for ``--json`` output."""
        return {"error": type(self).__name__, "where": self.where, "detail": self.detail}


# --- the caller's input is unreadable or malformed (exit 2) -----------------


class UsageError(SonicRegistryError):
    """The input could not be used at all: exit code 2."""

    exit_code = 2


class UnreadableInputError(UsageError, OSError):
    """A file is missing, unreadable, or not the kind of file expected."""


class InvalidManifest(UsageError, ValueError):
    """``release.toml``, a statement or an envelope does not follow its format.

    ``field`` is a dotted path into the document (``components.unet.path``).
    """

    def __init__(self, field: str, message: str, *, path: str = "") -> None:
        where = f"{path}: {field}" if path and field else (path or field)
        super().__init__(where, message)
        self.field = field
        self.path = path


class InvalidTrustStore(InvalidManifest):
    """``trust.json`` does not follow its format."""


class InvalidKeyError(UsageError, ValueError):
    """A key file is unreadable, of the wrong type, or the passphrase is wrong."""


class InvalidGraph(InvalidManifest):
    """The graph cannot be read: bad JSON/TOML, dangling link, missing node, cycle (exit 2)."""


# --- the input is readable but is not what was signed (exit 1) --------------


class VerificationError(SonicRegistryError):
    """Base of every verdict "this must not be loaded": exit code 1."""

    exit_code = 1


class UnsignedReleaseError(VerificationError):
    """No signature, or no signature by any key the caller trusts."""


class BadSignatureError(VerificationError):
    """A signature by a trusted key does not match the payload (edited after signing)."""


class ThresholdNotMetError(VerificationError):
    """Fewer trusted keys signed than the role's threshold requires."""


class ExpiredReleaseError(VerificationError):
    """The release, or every key that signed it, has expired."""


class RevokedKeyError(VerificationError):
    """A signature comes from a key the trust store has revoked."""


class RollbackError(VerificationError):
    """The release's serial is older than one already seen for that version."""


class StaleRegistryError(VerificationError):
    """A published registry's TUF metadata or files failed a check (exit 1).

    Expired (a frozen mirror), rolled back, mixed from two snapshots, badly
    signed, a file that differs from its signed entry, or one withheld.
    """


class DigestMismatchError(VerificationError):
    """A file's size or digest differs from the signed one (or it is missing)."""


def digest_mismatch(where: str, algorithm: str, expected: str, found: str) -> DigestMismatchError:
    """The one wording of "these bytes are not the signed ones", wherever it is found.

    ``verify``, ``verify --oms`` and the verified loader all report through it,
    so a tampered file reads the same whichever path caught it.

    >>> str(digest_mismatch("unet.safetensors", "sha256", "ab" * 32, "cd" * 32))
    'unet.safetensors: sha256: expected abababababababab..., found cdcdcdcdcdcdcdcd...'
    """
    return DigestMismatchError(
        where, f"{algorithm}: expected {expected[:16]}..., found {found[:16]}..."
    )


def size_mismatch(where: str, expected: int, found: int) -> DigestMismatchError:
    """The one wording of a file whose size is not the signed one.

    >>> str(size_mismatch("unet.safetensors", 10, 7))
    'unet.safetensors: size: expected 10 bytes, found 7'
    """
    return DigestMismatchError(where, f"size: expected {expected} bytes, found {found}")


class UnlistedFileError(VerificationError):
    """A weight file sits in the bundle but no signed manifest lists it."""


class UnsafePathError(VerificationError):
    """A listed path escapes the bundle root or is not a regular file."""


class MixedReleaseError(VerificationError):
    """A pipeline graph takes components from releases that must not mix."""


class IncompatibleRuntimeError(VerificationError):
    """The runtime (or torch) version does not satisfy the release's specifier."""


class InterfaceMismatchError(VerificationError):
    """A node's slots do not match what the loaded component or node version provides.

    Old ComfyUI_Sonic node interfaces, a component of the wrong role or
    interface on a slot, or a checkpoint of the wrong model family all end up
    here: the graph is readable, but it must not run as it is (exit 1).
    """


class ParameterRangeError(VerificationError):
    """A parameter lies outside the range the release was validated on.

    Raised by :meth:`sonic_registry.params.Report.raise_for_errors` for callers
    (the runtime) that want an exception rather than a report.
    """


_E = TypeVar("_E", bound=SonicRegistryError)


def with_all(problems: Sequence[_E]) -> _E:
    """The first of ``problems`` (not empty), carrying all of them in ``.problems``.

    Callers order ``problems`` most telling first; the CLI prints one line each
    and exits with the worst code among them.
    """
    first = problems[0]
    first.problems = tuple(problems)
    return first


def raise_all(problems: Sequence[SonicRegistryError]) -> None:
    """Raise :func:`with_all` of ``problems``; return if there are none."""
    if problems:
        raise with_all(problems)
