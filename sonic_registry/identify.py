""" "Which checkpoint is this?": hash files and answer from the registry.

The one-click check a UI calls: :func:`identify_files` hashes each file
(reusing the stat cache for files that did not change, so re-identifying a
multi-GB checkpoint is instant) and reports every verified release that lists
those bytes, or that the registry does not know them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UnreadableInputError, UnsignedReleaseError

if TYPE_CHECKING:
    from .bundle import VerifiedStatement
    from .catalog import PublishedFile
    from .digest import FileDigest, StatCache
    from .known import ReleaseSource
    from .lfs import LfsPointer
    from .registry import Match
    from .weight_clues import ConvertedFrom

__all__ = [
    "NON_OFFICIAL_UNET",
    "Identification",
    "identify_digest",
    "identify_file",
    "identify_files",
    "judge",
    "unknown_file_advice",
    "unsigned_files",
    "unsigned_refusal",
]


@dataclass(frozen=True)
class Identification:
    """A file, its digest and format, the releases that list it (newest first), and clues.

    ``pointer`` is set for a Git LFS pointer (``matches`` are then those of the
    file it points to, by oid *and* size); ``expected`` is the published file
    its path names in a known layout (a hint, never a verdict); ``reason`` says
    why an unlisted UNet is not Sonic's; ``source`` is what a ``convert``
    output says it was made from, with the releases listing that source.
    """

    path: str
    sha256: str
    size: int
    format: str
    matches: tuple[Match, ...]
    pointer: LfsPointer | None = None
    expected: PublishedFile | None = None
    reason: str | None = None
    source: tuple[ConvertedFrom, tuple[Match, ...]] | None = None
    outside: str | None = None  # a link's target outside the folder it may lead into

    @classmethod
    def outside_link(cls, path: str, target: str) -> Identification:
        """A link that is not followed: nothing of it was read."""
        return cls(path, "", 0, "link", (), outside=target)

    @property
    def known(self) -> bool:
        return bool(self.matches)

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None

    @property
    def status(self) -> str:
        """``official``, ``community``, ``published``, ``not-downloaded``, ``converted``,
        ``unknown`` (in a Sonic place, in no release) or ``unrelated``."""
        return judge(self)[0]

    @property
    def advice(self) -> str:
        return judge(self)[1]

    def describe(self) -> str:
        m = self.best
        if m is None or self.pointer is not None:
            return f"{self.path}: {self.advice}"
        from .trust import channel_label

        label = channel_label(m.channel, long=True)
        step = f" step {m.training_step}" if m.training_step is not None else ""
        also = (
            f" (also in {len(self.matches) - 1} other release(s))" if len(self.matches) > 1 else ""
        )
        return f"{self.path}: {m.model} {m.version} {m.role or m.path}{step} ({label}){also}"

    def to_dict(self) -> dict[str, Any]:
        status, advice, problem = judge(self)
        best = self.best
        return {
            "path": self.path,
            "sha256": self.sha256 or None,
            "size": self.size,
            "format": self.format,
            "known": self.known,
            "status": status,
            "release": f"{best.model}@{best.version}" if best else None,
            "role": best.role if best else None,
            "advice": advice,
            "problem": problem,
            "lfs_pointer": (
                {"oid": self.pointer.oid, "size": self.pointer.size} if self.pointer else None
            ),
            "matches": [m.to_dict() for m in self.matches],
        }


#: The warning the Sonic community asks for on a UNet that is not the published one.
NON_OFFICIAL_UNET = "non-official checkpoint: compatibility risk; use a verified release"


def judge(ident: Identification) -> tuple[str, str, bool]:
    """``(status, advice, problem)`` for one file: the one judgement doctor and identify share.

    ``problem`` is True when the file cannot be used as a verified release
    file as it is; a file of no Sonic release is no problem (it is left alone).
    """
    m = ident.best
    short = f"sha256 {ident.sha256[:16]}..."
    if ident.outside is not None:
        return (
            "outside",
            f"a link to {ident.outside}, outside the models folder (or missing): not followed",
            True,
        )
    if ident.pointer is not None:
        what = _what(m) if m else f"a file no known release lists (oid {ident.pointer.oid[:16]}...)"
        return (
            "not-downloaded",
            f"not downloaded: a Git LFS pointer to {what}; run `git lfs pull`",
            True,
        )
    if m is not None:
        notes = []
        if m.channel != "official" and m.role == "unet" and m.channel != "published":
            notes.append(NON_OFFICIAL_UNET)
        if m.channel == "published":
            from .catalog import label_text

            notes.append(f"published: {label_text()}")
        elif m.channel != "official":
            from .trust import channel_label

            notes.append(f"{channel_label(m.channel, long=True)} release")
        if ident.format in ("pickle", "torch-zip"):
            notes.append("pickle (runs code when loaded): `sonic-registry convert` to safetensors")
        return m.channel, "; ".join(notes) or "ok", False
    if ident.source is not None and ident.source[1]:
        src, found = ident.source
        return (
            "converted",
            f"made by `sonic-registry convert` from {_what(found[0])} ({src.name}, sha256 "
            f"{src.sha256[:16]}...); not verified: sign the converted bundle with your own key "
            "(`sonic-registry init` + `sonic-registry sign`) and trust that key",
            True,
        )
    if ident.expected is not None and ident.expected.sha256 is None:
        return (
            "unchecked",
            f"not checked: the built-in catalog records no digest of {ident.expected.file}; "
            "only a signed release listing it can vouch for it",
            False,
        )
    if ident.expected is not None:
        return "unknown", unknown_file_advice(ident.expected.role, ident.reason), True
    return "unrelated", f"not part of any Sonic release ({short}); nothing to do", False


def unsigned_refusal(
    source: str, statements: Iterable[VerifiedStatement]
) -> list[UnsignedReleaseError]:
    """The ``--require-signed`` policy: the one rule resolve, check-params, identify,
    doctor and the workflows hook apply, so a user meets one wording and exit code 1.

    ``statements`` are the releases vouching for ``source`` (a file's matches, or
    the release a graph resolved to). Only a release a trusted key signed counts:
    when none of them is signed (the built-in catalog's 'published' release never
    is), ``source`` is refused. No release at all is not this policy's verdict.
    """
    found = list(statements)
    if not found or any(s.signers for s in found):
        return []
    first = found[0]
    return [
        UnsignedReleaseError(
            source,
            f"the policy requires a signed release; {first.release.release_id} is "
            f"{first.channel}, signed by nobody (give --registry with a signed release)",
        )
    ]


def unsigned_files(idents: Iterable[Identification]) -> list[UnsignedReleaseError]:
    """:func:`unsigned_refusal` for each identified file (``identify``, ``doctor``)."""
    return [e for i in idents for e in unsigned_refusal(i.path, (m.statement for m in i.matches))]


def unknown_file_advice(role: str | None, reason: str | None) -> str:
    """What to say about a file in a Sonic place (or slot of ``role``) that no release lists."""
    if role == "unet":
        return NON_OFFICIAL_UNET + (f": {reason}" if reason else "")
    return "in no known release: replace it with the published file or one from a signed release"


def _what(m: Match) -> str:
    if m.channel == "published":
        return f"the published {m.path} ({m.model} {m.version} {m.role})"
    return f"{m.role or m.path} of {m.describe()} ({m.channel})"


def _check_file(path: Path) -> Path:
    """The file to read for ``path``: itself, or a link's target inside its link root
    (a Hugging Face snapshot's blob); anything else is unreadable input."""
    if not path.exists():
        raise UnreadableInputError(str(path), "no such file")
    if not path.is_file():
        raise UnreadableInputError(str(path), "not a regular file")
    if path.is_symlink():
        from .doctor import link_target

        target = link_target(path, path.parent)
        if target is None:
            raise UnreadableInputError(
                str(path), f"a link to {path.resolve()}, outside its folder: not followed"
            )
        return target
    return path


def identify_files(
    paths: Iterable[str | Path],
    registry: ReleaseSource,
    *,
    stat_cache: StatCache | None = None,
    progress: Callable[[int], None] | None = None,
    names: list[str] | None = None,
) -> list[Identification]:
    """Identify each file by its sha256 (never by its name); a pointer by its oid and size.

    ``names`` (one per path) are where the files were found when that differs
    from the path read (a Hugging Face snapshot link and its blob): the name
    gives the layout hint and the reported path.
    """
    given = [Path(p) for p in paths]
    items = [_check_file(p) for p in given]
    from .digest import hash_with_cache

    digests = hash_with_cache(items, stat_cache=stat_cache, progress=progress)
    lookups: dict[str, tuple[Match, ...]] = {}

    def lookup(sha256: str) -> tuple[Match, ...]:
        if sha256 not in lookups:
            lookups[sha256] = registry.lookup(sha256)
        return lookups[sha256]

    shown = names if names is not None else [str(p) for p in given]
    return [
        identify_digest(p, d, lookup, name=n) for p, d, n in zip(items, digests, shown, strict=True)
    ]


def identify_digest(
    path: Path,
    digest: FileDigest,
    lookup: Callable[[str], tuple[Match, ...]],
    *,
    name: str | None = None,
) -> Identification:
    """Identify a hashed file: by digest, else by the clues it carries (pointer, names, source)."""
    from .catalog import load_catalog
    from .formats import sniff
    from .lfs import read_pointer
    from .weight_clues import converted_from, lookalike_reason

    shown = name if name is not None else str(path)
    fmt = sniff(path)
    expected = load_catalog().by_path(shown)
    head = (shown, digest.sha256, digest.size, fmt)
    if fmt == "lfs-pointer":
        pointer = read_pointer(path)
        if pointer is not None:
            found = tuple(m for m in lookup(pointer.oid) if _size_of(m) in (None, pointer.size))
            return Identification(*head, found, pointer, expected)
    matches = lookup(digest.sha256)
    if matches:
        return Identification(*head, matches, None, expected)
    reason = lookalike_reason(path, fmt) if fmt in ("pickle", "torch-zip") else None
    src = converted_from(path) if fmt == "safetensors" else None
    source = (src, lookup(src.sha256)) if src is not None else None
    return Identification(*head, (), None, expected, reason, source)


def _size_of(m: Match) -> int | None:
    """The size a release lists for a match's file (None where it was not recorded)."""
    subject = m.statement.subjects.get(m.path)
    return subject.size if subject is not None else None


def identify_file(
    path: str | Path, registry: ReleaseSource, *, stat_cache: StatCache | None = None
) -> Identification:
    return identify_files([path], registry, stat_cache=stat_cache)[0]
