"""The trust store: which keys may sign which channel, and what has been seen before.

``trust.json`` lists public keys with their roles (``official``, ``community``)
and optional expiry, a signature threshold per role, revoked keyids, and the
highest serial seen for each ``model@version`` (rollback protection). It is
itself versioned: every write bumps ``version``, and writes are atomic and
serialised by a lock file so concurrent verifiers never lose a serial.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .canonical import canonical_bytes, load_json_file
from .errors import InvalidKeyError, InvalidTrustStore, RollbackError, UnreadableInputError
from .fileio import atomic_write_bytes
from .manifest import parse_time
from .schema import validate
from .signing import PublicKey, public_key_from_pem

if TYPE_CHECKING:  # pragma: no cover
    from .bundle import VerifiedStatement

__all__ = [
    "ROLES",
    "TrustStore",
    "TrustedKey",
    "record_verified_serial",
    "release_key",
    "resolve_trust",
]

ROLES = ("official", "community")


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
        """Look a key up by full keyid, or by a unique prefix of at least 8 hex digits."""
        if keyid in self.keys:
            return self.keys[keyid]
        if len(keyid) >= 8:
            hits = [k for kid, k in self.keys.items() if kid.startswith(keyid)]
            if len(hits) == 1:
                return hits[0]
        return None

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
        from filelock import FileLock

        with FileLock(str(self.path) + ".lock"):
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
