"""Release, Component, ParamRange and Compatibility: the signed description of a release.

A :class:`Release` is built either from the maintainer's ``release.toml``
(:meth:`Release.from_toml`) or from a verified statement's predicate
(:meth:`Release.from_predicate`); :meth:`Release.to_predicate` is the exact
inverse of the latter. All values are frozen: a verified release cannot be
edited after the fact by the code that holds it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import MappingProxyType
from typing import Any

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from .canonical import canonical_sha256
from .errors import InvalidManifest
from .fileio import read_bounded
from .schema import validate

__all__ = [
    "MAX_TOML_BYTES",
    "PREDICATE_TYPE",
    "Compatibility",
    "Component",
    "ParamRange",
    "Release",
    "check_distinct_names",
    "check_relative_path",
    "format_time",
    "param_range",
    "parse_time",
    "path_problem",
]

PREDICATE_TYPE = "https://sonic_registry/release/v1"
MAX_TOML_BYTES = 4 * 1024 * 1024
DEFAULT_LIFETIME = timedelta(days=365)
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with second precision, the only timestamp form we sign."""
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


#: The one timestamp form we sign, ``TIME_FORMAT`` with every field at full width.
#: Hour 24 is refused here: ``fromisoformat`` reads ``T24:00:00`` as the next day's
#: midnight from Python 3.14 on, which ``strptime`` (and 3.11-3.13) refused.
_TIME_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T(?:[01][0-9]|2[0-3]):[0-9]{2}:[0-9]{2}Z")


def parse_time(text: str, *, field: str = "", path: str = "") -> datetime:
    """A ``TIME_FORMAT`` timestamp (UTC, second precision) as an aware datetime.

    The shape is checked, then :meth:`datetime.fromisoformat` reads it: unlike
    ``strptime`` it needs no ``_strptime`` import and regex compiles (~2 ms of
    every ``verify``), and the shape check refuses the unpadded fields that
    ``strptime`` let through.
    """
    try:
        if not isinstance(text, str) or not _TIME_SHAPE.fullmatch(text):
            raise ValueError(text)
        return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidManifest(
            field, f"expected a UTC time like 2027-01-31T00:00:00Z, found {text!r}", path=path
        ) from exc


#: One path segment (DESIGN.md): portable on every OS and filesystem, so a name
#: means the same file on Linux, macOS and Windows and cannot hide in a terminal.
_SEGMENT = re.compile(r"[A-Za-z0-9._-]+")
#: Names Windows maps to devices, with or without an extension (``NUL.json``).
_DEVICES = frozenset(
    {
        "CON",
        "PRN",
        "AUX",
        "NUL",
        *(f"COM{i}" for i in range(1, 10)),
        *(f"LPT{i}" for i in range(1, 10)),
    }
)


def path_problem(name: str) -> str | None:
    """Why ``name`` is not a portable bundle path (DESIGN.md), or None; sign and verify use it.

    Relative, ``/``-separated, NFC; each segment ``[A-Za-z0-9._-]+``, not ``.``
    or ``..``, not ending in a dot, not a Windows device name.

    >>> path_problem("unet/model.safetensors") is None
    True
    >>> path_problem("NUL.json")
    "segment 'NUL.json' is a Windows device name"
    """
    if not name:
        return "empty"
    if unicodedata.normalize("NFC", name) != name:
        return "not NFC-normalised"
    if name.startswith("/") or "\\" in name:
        return "not a relative /-separated path"
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            return f"segment {segment!r} is not a name"
        if not _SEGMENT.fullmatch(segment):
            bad = next(c for c in segment if not _SEGMENT.fullmatch(c))
            return f"segment {segment!r} has {bad!r}; expected only A-Z a-z 0-9 . _ -"
        if segment.endswith("."):
            return f"segment {segment!r} ends in a dot"
        if segment.split(".")[0].upper() in _DEVICES:
            return f"segment {segment!r} is a Windows device name"
    return None


def check_relative_path(name: str, *, field: str, path: str = "") -> str:
    """Refuse paths that could leave the bundle root or mean another file elsewhere.

    >>> check_relative_path("../x", field="path")
    Traceback (most recent call last):
    ...
    sonic_registry.errors.InvalidManifest: path: expected a path inside the bundle, found '../x'
    """
    problem = path_problem(name)
    if problem is None:
        return name
    escapes = (
        not name
        or name.startswith(("/", "./"))
        or "\\" in name
        or "\x00" in name
        or ".." in name.split("/")
        or (len(name) > 1 and name[1] == ":")  # a drive letter
    )
    if escapes:  # could leave the root: the message every caller knows
        raise InvalidManifest(
            field, f"expected a path inside the bundle, found {name!r}", path=path
        )
    raise InvalidManifest(field, f"expected a portable name, found {name!r}: {problem}", path=path)


def check_distinct_names(names: Iterable[str], *, field: str, path: str = "") -> None:
    """Refuse two names that are one file on a case-insensitive filesystem (macOS, Windows)."""
    seen: dict[str, str] = {}
    for name in names:
        key = name.casefold()
        if key in seen and seen[key] != name:
            raise InvalidManifest(
                field,
                f"expected names distinct after case folding, found {seen[key]!r} and {name!r}",
                path=path,
            )
        seen[key] = name


@dataclass(frozen=True, slots=True)
class Component:
    """One role of a release: which files hold it and what slot type it fills."""

    role: str
    paths: tuple[str, ...]
    format: str
    interface: str
    training_step: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "paths": list(self.paths),
            "format": self.format,
            "interface": self.interface,
        }
        if self.training_step is not None:
            out["training_step"] = self.training_step
        return out


@dataclass(frozen=True, slots=True)
class ParamRange:
    """A validated range: inside ``recommended`` is ok, inside ``allowed`` is a warning.

    Bounds are inclusive; ``None`` means that side is unbounded.
    """

    name: str
    type: str
    recommended: tuple[float, float] | None = None
    allowed: tuple[float, float] | None = None
    below: str = ""
    above: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.recommended is not None:
            out["recommended"] = list(self.recommended)
        if self.allowed is not None:
            out["allowed"] = list(self.allowed)
        if self.below:
            out["below"] = self.below
        if self.above:
            out["above"] = self.above
        return out


@dataclass(frozen=True, slots=True)
class Compatibility:
    """A declaration by a newer release that components of another may be mixed in."""

    model: str
    versions: SpecifierSet
    roles: tuple[str, ...] = ()

    def covers(self, model: str, version: str, role: str) -> bool:
        if model != self.model or (self.roles and role not in self.roles):
            return False
        return self.versions.contains(version, prereleases=True)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"model": self.model, "versions": str(self.versions)}
        if self.roles:
            out["roles"] = list(self.roles)
        return out


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class Release:
    """Everything a release promises, minus the file digests (those are subjects)."""

    model: str
    version: str
    serial: int
    channel: str
    created: str
    expires: str
    components: Mapping[str, Component]
    config: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    data: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    params: Mapping[str, ParamRange] = field(default_factory=lambda: MappingProxyType({}))
    runtime: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    compatible_with: tuple[Compatibility, ...] = ()

    # -- identity -----------------------------------------------------------

    @property
    def release_id(self) -> str:
        """``model@version#serial``, e.g. ``sonic@1.3.0#1``.

        Signed releases have serials from 1; serial 0 is the built-in catalog's
        unsigned published release, which has no serial to name (``sonic@2025.1.14``).
        """
        tail = f"#{self.serial}" if self.serial else ""
        return f"{self.model}@{self.version}{tail}"

    @property
    def parsed_version(self) -> Version:
        return Version(self.version)

    @property
    def config_digest(self) -> str:
        return canonical_sha256(_thaw(self.config))

    @property
    def duration_tolerance(self) -> float:
        value = self.data.get("duration_tolerance", 0.04)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            # A string "inf" would pass float(); only a finite number is a tolerance.
            raise InvalidManifest(
                "data.duration_tolerance", f"expected a finite number, found {value!r}"
            )
        return float(value)

    def component_for_path(self, name: str) -> Component | None:
        for component in self.components.values():
            if name in component.paths:
                return component
        return None

    # -- parsing ------------------------------------------------------------

    @classmethod
    def from_toml(
        cls,
        path: str | Path,
        *,
        now: datetime | None = None,
        defaults: Mapping[str, str] | None = None,
    ) -> Release:
        """Read ``release.toml``; ``created``/``expires``/``serial`` get defaults.

        ``defaults`` supplies ``created``/``expires`` the file leaves out (``sign``
        passes those of the envelope it adds a signature to).
        """
        import tomllib  # here: verify never reads TOML, and this is ~2 ms of its start-up

        p = Path(path)
        raw = read_bounded(
            p,
            MAX_TOML_BYTES,
            kind="release.toml",
            missing="no such file (run `sonic-registry init`)",
        )
        try:
            data = tomllib.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise InvalidManifest("", "not UTF-8 text", path=str(p)) from exc
        except tomllib.TOMLDecodeError as exc:
            raise InvalidManifest("", f"not valid TOML: {exc}", path=str(p)) from exc
        except RecursionError as exc:
            raise InvalidManifest("", "TOML nested too deeply", path=str(p)) from exc
        return cls.from_toml_dict(data, where=str(p), now=now, defaults=defaults)

    @classmethod
    def from_toml_dict(
        cls,
        data: Mapping[str, Any],
        *,
        where: str = "release.toml",
        now: datetime | None = None,
        defaults: Mapping[str, str] | None = None,
    ) -> Release:
        data = _toml_to_json(data, where=where)
        validate(data, "release-toml", where=where)
        head = {**(defaults or {}), **data["release"]}
        created = head.get("created") or format_time(now or datetime.now(UTC))
        expires = head.get("expires") or format_time(
            parse_time(created, field="release.created", path=where) + DEFAULT_LIFETIME
        )
        components = {
            role: {
                "paths": spec["paths"] if "paths" in spec else [spec["path"]],
                **{k: v for k, v in spec.items() if k not in ("path", "paths")},
            }
            for role, spec in data["components"].items()
        }
        predicate = {
            "model": head["model"],
            "version": head["version"],
            "serial": head.get("serial", 1),
            "channel": head.get("channel", "official"),
            "created": created,
            "expires": expires,
            "components": components,
            "config": data.get("config", {}),
            "data": data.get("data", {}),
            "params": data.get("params", {}),
            "runtime": data.get("runtime", {}),
            "compatible_with": data.get("compatible_with", []),
        }
        return cls._from_checked(predicate, where=where, prefix_components="components")

    @classmethod
    def from_predicate(cls, predicate: Mapping[str, Any], *, where: str = "") -> Release:
        """Build from a statement predicate whose shape the statement schema checked."""
        release = cls._from_checked(predicate, where=where, prefix_components="components")
        claimed = predicate["config_digest"]["sha256"]
        if claimed != release.config_digest:
            raise InvalidManifest(
                "predicate.config_digest.sha256",
                f"expected {release.config_digest} (sha256 of the canonical config), "
                f"found {claimed}",
                path=where,
            )
        return release

    @classmethod
    def _from_checked(cls, p: Mapping[str, Any], *, where: str, prefix_components: str) -> Release:
        # Step 1: the version must be PEP 440, or ordering releases is meaningless.
        try:
            Version(p["version"])
        except InvalidVersion as exc:
            raise InvalidManifest(
                "release.version", f"expected a PEP 440 version, found {p['version']!r}", path=where
            ) from exc
        # Step 2: timestamps parse and expiry comes after creation.
        created = parse_time(p["created"], field="release.created", path=where)
        expires = parse_time(p["expires"], field="release.expires", path=where)
        if expires <= created:
            raise InvalidManifest(
                "release.expires",
                f"expected a time after created {p['created']}, found {p['expires']}",
                path=where,
            )
        # Step 3: every component path is confined to the bundle root, and no file
        # belongs to two roles (a file must identify exactly one component).
        components: dict[str, Component] = {}
        owner: dict[str, str] = {}
        for role, spec in p["components"].items():
            paths = tuple(
                check_relative_path(name, field=f"{prefix_components}.{role}.path", path=where)
                for name in spec["paths"]
            )
            for name in paths:
                if name in owner:
                    raise InvalidManifest(
                        f"{prefix_components}.{role}.path",
                        f"{name!r} is already the {owner[name]} component",
                        path=where,
                    )
                owner[name] = role
            components[role] = Component(
                role=role,
                paths=paths,
                format=spec["format"],
                interface=spec["interface"],
                training_step=spec.get("training_step"),
            )
        # Step 4: parameter ranges are ordered and recommended sits inside allowed.
        params = {name: param_range(name, spec, where) for name, spec in p["params"].items()}
        # Step 5: runtime requirements and compatibility declarations are PEP 440 specifiers.
        runtime = {
            dist: str(_specifier(spec, f"runtime.{dist}", where))
            for dist, spec in p["runtime"].items()
        }
        compat = tuple(
            Compatibility(
                model=c["model"],
                versions=_specifier(c["versions"], f"compatible_with.{i}.versions", where),
                roles=tuple(c.get("roles", ())),
            )
            for i, c in enumerate(p["compatible_with"])
        )
        return cls(
            model=p["model"],
            version=p["version"],
            serial=p["serial"],
            channel=p["channel"],
            created=p["created"],
            expires=p["expires"],
            components=MappingProxyType(components),
            config=_freeze(p["config"]),
            data=_freeze(p["data"]),
            params=MappingProxyType(params),
            runtime=MappingProxyType(runtime),
            compatible_with=compat,
        )

    # -- serialisation ------------------------------------------------------

    def to_predicate(self) -> dict[str, Any]:
        """The predicate of the signed statement (inverse of :meth:`from_predicate`)."""
        return {
            "model": self.model,
            "version": self.version,
            "serial": self.serial,
            "channel": self.channel,
            "created": self.created,
            "expires": self.expires,
            "components": {role: c.to_dict() for role, c in self.components.items()},
            "config": _thaw(self.config),
            "config_digest": {"sha256": self.config_digest},
            "data": _thaw(self.data),
            "params": {name: r.to_dict() for name, r in self.params.items()},
            "runtime": dict(self.runtime),
            "compatible_with": [c.to_dict() for c in self.compatible_with],
        }


def _specifier(text: str, field_name: str, where: str) -> SpecifierSet:
    try:
        return SpecifierSet(text)
    except InvalidSpecifier as exc:
        raise InvalidManifest(
            field_name,
            f"expected a PEP 440 specifier like '>=1.3,<1.4', found {text!r}",
            path=where,
        ) from exc


def _bound(value: Any, field_name: str, where: str) -> tuple[float, float] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2:  # found by tests/test_fuzz.py
        raise InvalidManifest(field_name, f"expected [low, high], found {value!r}", path=where)
    lo, hi = value
    for v in (lo, hi):
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise InvalidManifest(field_name, f"expected finite numbers, found {v!r}", path=where)
    if lo > hi:
        raise InvalidManifest(
            field_name, f"expected [low, high] with low <= high, found [{lo}, {hi}]", path=where
        )
    return (lo, hi)


def param_range(name: str, spec: Mapping[str, Any], where: str = "") -> ParamRange:
    """One ``[params.NAME]`` table as a checked :class:`ParamRange` (release.toml or catalog)."""
    if not isinstance(spec, Mapping) or spec.get("type") not in ("int", "float"):
        raise InvalidManifest(f"params.{name}.type", "expected 'int' or 'float'", path=where)
    recommended = _bound(spec.get("recommended"), f"params.{name}.recommended", where)
    allowed = _bound(spec.get("allowed"), f"params.{name}.allowed", where)
    if (
        recommended
        and allowed
        and not (allowed[0] <= recommended[0] and recommended[1] <= allowed[1])
    ):
        raise InvalidManifest(
            f"params.{name}.recommended",
            f"expected a range inside allowed {list(allowed)}, found {list(recommended)}",
            path=where,
        )
    return ParamRange(
        name=name,
        type=spec["type"],
        recommended=recommended,
        allowed=allowed,
        below=str(spec.get("below", "")),
        above=str(spec.get("above", "")),
    )


def _toml_to_json(value: Any, field: str = "", where: str = "") -> Any:
    """TOML dates/times become strings so the JSON Schema sees JSON data.

    A non-finite number (``inf``, ``nan``, or ``1e400``, which TOML reads as
    infinity) is refused wherever it sits, ``data`` included: an infinite
    ``duration_tolerance`` would let every duration pass.
    """
    if isinstance(value, Mapping):
        return {
            k: _toml_to_json(v, f"{field}.{k}" if field else k, where) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_toml_to_json(v, f"{field}.{i}", where) for i, v in enumerate(value)]
    if isinstance(value, datetime):
        return format_time(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidManifest(field, f"expected a finite number, found {value}", path=where)
    return value
