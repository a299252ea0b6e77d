"""The trust store: which keys may sign which channel, and what has been seen before.

``trust.json`` lists public keys with their roles (``official``, ``community``)
and optional expiry, a signature threshold per role, revoked keyids, and the
highest serial seen for each ``model@version`` (rollback protection). It is
itself versioned: every write bumps ``version``, and writes are atomic and
serialised by a lock file so concurrent verifiers never lose a serial.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .canonical import canonical_bytes, load_json_file
from .errors import (
    BadSignatureError,
    ExpiredReleaseError,
    InvalidKeyError,
    InvalidTrustStore,
    RevokedKeyError,
    RollbackError,
    ThresholdNotMetError,
    UnreadableInputError,
    UnsignedReleaseError,
    UsageError,
    VerificationError,
    with_all,
)
from .fileio import atomic_write_bytes
from .manifest import parse_time
from .schema import validate
from .signing import PublicKey, Signature, public_key_from_pem

if TYPE_CHECKING:  # pragma: no cover
    from .bundle import VerifiedStatement

#: The shortest keyid prefix that names a key (16 bits: a typo rarely matches).
MIN_KEYID_PREFIX = 4

__all__ = [
    "ROLES",
    "TrustStore",
    "TrustedKey",
    "VerificationResult",
    "channel_label",
    "get_verification_result",
    "record_verified_serial",
    "release_key",
    "resolve_trust",
]

ROLES = ("official", "community")

#: How each channel is worded to a user, short and long; "non-official" is also
#: the label stored in audit records, so it never changes.
_CHANNEL_WORDS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "official": ("official", "official"),
        "community": ("non-official", "community (non-official)"),
        "published": (
            "published",
            "published (matches the files the authors published; not signed by them)",
        ),
        "unverified": ("unverified", "UNVERIFIED (no trusted signature)"),
    }
)


def channel_label(channel: str, *, long: bool = False) -> str:
    """The one wording of a channel: ``non-official`` or, long, ``community (non-official)``."""
    short, full = _CHANNEL_WORDS.get(channel, (channel, channel))
    return full if long else short


def release_key(model: str, version: str) -> str:
    """The key under which serials are tracked: ``model@version``."""
    return f"{model}@{version}"


@dataclass(frozen=True)
class TrustedKey:
    public: PublicKey
    roles: tuple[str, ...]
    name: str = ""
    expires: str | None = None

    @property
    def keyid(self) -> str:
        return self.public.keyid

    def expired(self, now: datetime) -> bool:
        return self.expires is not None and parse_time(self.expires) <= now

    @property
    def label(self) -> str:
        return self.name or self.keyid[:16]

    @property
    def channel(self) -> str:
        """The channel this key's own signature vouches for: official beats community."""
        return "official" if "official" in self.roles else "community"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {**self.public.to_key_dict(), "roles": list(self.roles)}
        if self.name:
            out["name"] = self.name
        if self.expires:
            out["expires"] = self.expires
        return out


@dataclass(frozen=True)
class TrustStore:
    """An immutable view of ``trust.json``; ``with_*`` methods return changed copies."""

    keys: Mapping[str, TrustedKey] = field(default_factory=lambda: MappingProxyType({}))
    thresholds: Mapping[str, int] = field(
        default_factory=lambda: MappingProxyType({"official": 1, "community": 1})
    )
    revoked: frozenset[str] = frozenset()
    serials: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    version: int = 0  # an unsaved store; the first save writes version 1
    path: Path | None = None

    # -- construction ---------------------------------------------------------

    @classmethod
    def from_public_keys(cls, keys: Iterable[PublicKey]) -> TrustStore:
        """Keys pinned on the command line: trusted for both channels, threshold 1."""
        return cls().with_pinned(keys)

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "trust.json") -> TrustStore:
        validate(data, "trust", where=where)
        keys: dict[str, TrustedKey] = {}
        for keyid, spec in data["keys"].items():
            field_name = f"keys.{keyid[:16]}"
            try:
                public = public_key_from_pem(spec["keyval"]["public"].encode(), where=where)
            except InvalidKeyError as exc:
                raise InvalidTrustStore(field_name, exc.detail, path=where) from exc
            if public.keyid != keyid:
                raise InvalidTrustStore(
                    field_name,
                    f"expected keyid {public.keyid} (sha256 of the canonical key), found {keyid}",
                    path=where,
                )
            if (public.keytype, public.scheme) != (spec["keytype"], spec["scheme"]):
                raise InvalidTrustStore(
                    field_name,
                    f"expected keytype {public.keytype}, found {spec['keytype']}",
                    path=where,
                )
            if spec.get("expires"):
                parse_time(spec["expires"], field=f"{field_name}.expires", path=where)
            keys[keyid] = TrustedKey(
                public, tuple(spec["roles"]), spec.get("name", ""), spec.get("expires")
            )
        thresholds = {"official": 1, "community": 1}
        thresholds.update({r: v["threshold"] for r, v in data["roles"].items()})
        return cls(
            keys=MappingProxyType(keys),
            thresholds=MappingProxyType(thresholds),
            revoked=frozenset(data["revoked"]),
            serials=MappingProxyType(dict(data["serials"])),
            version=data["version"],
        )

    @classmethod
    def load(cls, path: str | Path) -> TrustStore:
        p = Path(path)
        store = cls.from_dict(load_json_file(p), where=str(p))
        return replace(store, path=p)

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "keys": {kid: k.to_dict() for kid, k in sorted(self.keys.items())},
            "roles": {r: {"threshold": n} for r, n in sorted(self.thresholds.items())},
            "revoked": sorted(self.revoked),
            "serials": dict(sorted(self.serials.items())),
        }

    def save(self, path: str | Path | None = None) -> TrustStore:
        """Write atomically with ``version`` bumped; returns the store as written."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise UnreadableInputError("trust.json", "no path to save the trust store to")
        written = replace(self, version=self.version + 1, path=target)
        data = canonical_bytes(written.to_dict())
        atomic_write_bytes(target, data + b"\n")
        return written

    # -- edits (each returns a new store) --------------------------------------

    def with_key(
        self,
        public: PublicKey,
        roles: Iterable[str],
        *,
        name: str = "",
        expires: str | None = None,
    ) -> TrustStore:
        keys = dict(self.keys)
        keys[public.keyid] = TrustedKey(public, tuple(sorted(set(roles))), name, expires)
        return replace(self, keys=MappingProxyType(keys))

    def with_pinned(self, keys: Iterable[PublicKey]) -> TrustStore:
        """Add keys the caller pinned directly (``--public-key``) for both channels."""
        store = self
        for k in keys:
            store = store.with_key(k, ROLES, name=f"pinned:{k.keyid[:16]}")
        return store

    def with_revoked(self, keyid: str) -> TrustStore:
        return replace(self, revoked=self.revoked | {keyid})

    def with_threshold(self, role: str, threshold: int) -> TrustStore:
        thresholds = dict(self.thresholds)
        thresholds[role] = threshold
        return replace(self, thresholds=MappingProxyType(thresholds))

    def with_serial(self, model: str, version: str, serial: int) -> TrustStore:
        serials = dict(self.serials)
        serials[release_key(model, version)] = serial
        return replace(self, serials=MappingProxyType(serials))

    # -- queries ---------------------------------------------------------------

    def find_key(self, keyid: str) -> TrustedKey | None:
        """The trusted key ``keyid`` names (full keyid or unique prefix), else None."""
        try:
            return self.keys.get(self.match_keyid(keyid))
        except UsageError:
            return None

    def match_keyid(self, text: str, *, where: str = "keyid") -> str:
        """The full keyid ``text`` names, or a :class:`UsageError` saying why it names none.

        A trusted key's full keyid or a unique prefix of at least
        ``MIN_KEYID_PREFIX`` hex digits names that key; any other full 64-hex
        keyid names itself (a key may be revoked before it was ever trusted).
        """
        t = text.strip().lower()
        if not t or any(c not in "0123456789abcdef" for c in t):
            raise UsageError(where, f"expected hex digits of a keyid, found {text!r}")
        if t in self.keys or len(t) == 64:
            return t
        if len(t) < MIN_KEYID_PREFIX:
            raise UsageError(
                where,
                f"prefix {text!r} is too short: give at least {MIN_KEYID_PREFIX} hex digits",
            )
        hits = sorted(kid for kid in self.keys if kid.startswith(t))
        if len(hits) > 1:
            raise UsageError(
                where,
                f"prefix {text!r} is ambiguous: it matches {', '.join(h[:16] for h in hits)}; "
                "give more digits",
            )
        if not hits:
            raise UsageError(
                where,
                f"no trusted key starts with {text!r} "
                "(a key that was never added needs its full 64-hex keyid)",
            )
        return hits[0]

    def check_rollback(self, model: str, version: str, serial: int, *, where: str = "") -> None:
        # Prevent rollback: a serial lower than one already verified for this
        # exact model@version means someone is replaying an older signed manifest.
        seen = self.serials.get(release_key(model, version), 0)
        if serial < seen:
            raise RollbackError(
                where,
                f"serial: expected >= {seen} (already seen for {release_key(model, version)}), "
                f"found {serial}: refusing a rollback to an older manifest",
            )

    def record_serial(self, model: str, version: str, serial: int, *, where: str = "") -> None:
        """Persist the highest serial seen, re-reading under a lock so no writer is lost."""
        if self.path is None:
            return
        from .locks import file_lock

        with file_lock(self.path):
            current = TrustStore.load(self.path)
            current.check_rollback(model, version, serial, where=where)
            if current.serials.get(release_key(model, version), 0) < serial:
                current.with_serial(model, version, serial).save()


def resolve_trust(
    trust: TrustStore | str | Path | None, public_keys: Iterable[PublicKey] = ()
) -> TrustStore:
    """The store a verifier uses: ``trust.json`` (or a store) plus any pinned keys.

    Having neither is a usage error: verifying against nobody proves nothing.
    """
    pinned = list(public_keys)
    if trust is None:
        if not pinned:
            raise UnreadableInputError(
                "", "no trusted keys: give --trust trust.json or --public-key KEY.pub"
            )
        return TrustStore.from_public_keys(pinned)
    store = trust if isinstance(trust, TrustStore) else TrustStore.load(trust)
    return store.with_pinned(pinned)


def record_verified_serial(store: TrustStore, statement: VerifiedStatement, *, where: str) -> None:
    """Remember ``statement``'s serial in the trust store, if and only if trusted keys signed it.

    The one gate every caller that records a serial goes through: an envelope
    accepted with ``allow_unsigned`` (no trusted signature, channel
    "unverified") must never move the rollback floor, or an unsigned envelope
    with serial 999999 would make every genuine release look like a rollback.
    """
    if statement.channel == "unverified" or store.path is None:
        return
    r = statement.release
    store.record_serial(r.model, r.version, r.serial, where=where)


# -- the trust decision ----------------------------------------------------------


@dataclass(frozen=True)
class VerificationResult:
    """Which signatures count, as python-tuf's ``VerificationResult``.

    ``valid`` holds each distinct key that is in the store, not revoked, not
    expired and whose signature verified; ``problems`` says why every other
    signature does not count, most telling first. A role's verdict is then a
    count of valid keys holding that role against the role's threshold.
    """

    valid: Mapping[str, TrustedKey]
    problems: tuple[VerificationError, ...]
    thresholds: Mapping[str, int]

    def signers(self, role: str | None = None) -> tuple[TrustedKey, ...]:
        """Valid keys that may sign for ``role`` (any role when None), sorted by label."""
        keys = [k for k in self.valid.values() if role is None or role in k.roles]
        return tuple(sorted(keys, key=lambda k: k.label))

    def threshold(self, role: str | None) -> int:
        return 1 if role is None else self.thresholds.get(role, 1)

    def verified(self, role: str | None = None) -> bool:
        return len(self.signers(role)) >= self.threshold(role)

    def require(self, role: str | None, where: str) -> tuple[TrustedKey, ...]:
        """The role's signers; raises the most telling problem (all in ``.problems``) if short."""
        signers = self.signers(role)
        if len(signers) >= self.threshold(role):
            return signers
        problems = list(self.problems)
        if role is not None and self.valid:
            others = sorted(k.label for k in self.valid.values() if role not in k.roles)
            extra = f" (also signed by {', '.join(others)}, not {role} keys)" if others else ""
            problems.insert(
                0,
                ThresholdNotMetError(
                    where,
                    f"{role} release needs {self.threshold(role)} {role} signature(s), "
                    f"found {len(signers)}" + extra,
                ),
            )
        if not problems:
            problems.append(UnsignedReleaseError(where, "expected a signature, found none"))
        raise with_all(sorted(problems, key=lambda p: _SEVERITY.get(type(p), 9)))


# Most telling first: a forged/edited payload or a revoked key explains a
# failure better than "unknown key".
_SEVERITY: Mapping[type[VerificationError], int] = MappingProxyType(
    {
        BadSignatureError: 0,
        RevokedKeyError: 1,
        ThresholdNotMetError: 2,
        ExpiredReleaseError: 3,
        UnsignedReleaseError: 4,
    }
)


def _keyid_hint(key: PublicKey) -> str:
    return key.keyid


def get_verification_result(
    store: TrustStore,
    signatures: Sequence[Signature],
    message: bytes,
    *,
    where: str,
    now: datetime | None = None,
    hint_of: Callable[[PublicKey], str] = _keyid_hint,
    algorithms: Collection[str] | None = None,
) -> VerificationResult:
    """Decide which of ``signatures`` over ``message`` count, and why the others do not.

    The one home of the rule: a signature counts when a key of the store (of
    one of ``algorithms``, when given) verifies it, that key is not revoked and
    not expired at ``now``, and no other signature already counted that key.
    A signature's ``keyid`` is an unauthenticated hint (DSSE): the key it names
    (by ``hint_of``: our keyid, or model_signing's PEM hash) is tried first,
    then, when it is absent, empty, unknown or wrong, every other key of the
    store that could have made such a signature. A hint therefore never turns
    a valid signature into a failure, and never makes a key count that is not
    in the store.
    """
    moment = now or datetime.now(UTC)
    keys = [
        k for k in store.keys.values() if algorithms is None or k.public.algorithm in algorithms
    ]
    valid: dict[str, TrustedKey] = {}
    problems: list[VerificationError] = []
    for sig in signatures:
        hinted = [k for k in keys if sig.keyid and hint_of(k.public) == sig.keyid]
        others = [k for k in keys if k not in hinted and k.public.could_have_signed(sig.sig)]
        signer = next((k for k in (*hinted, *others) if k.public.verify(sig.sig, message)), None)
        if signer is None:
            problems.append(_unverified(store, sig, hinted, where))
        elif signer.keyid in store.revoked:
            problems.append(RevokedKeyError(where, f"signed by revoked key {signer.keyid[:16]}"))
        elif signer.expired(moment):
            problems.append(
                ExpiredReleaseError(where, f"key {signer.label} expired at {signer.expires}")
            )
        else:
            valid[signer.keyid] = signer
    return VerificationResult(MappingProxyType(valid), tuple(problems), store.thresholds)


def _unverified(
    store: TrustStore, sig: Signature, hinted: Sequence[TrustedKey], where: str
) -> VerificationError:
    """Why a signature no key of the store verifies does not count."""
    if sig.keyid in store.revoked:
        return RevokedKeyError(where, f"signed by revoked key {sig.keyid[:16]}")
    if hinted:
        return BadSignatureError(
            where,
            f"signature by {hinted[0].label} does not match the payload "
            "(edited or re-serialised after signing)",
        )
    if sig.keyid:
        return UnsignedReleaseError(where, f"signed by unknown key {sig.keyid[:16]}")
    return UnsignedReleaseError(where, "signed by none of the trusted keys")
