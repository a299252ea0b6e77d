"""The pack's settings: a small TOML file under ComfyUI's user directory.

Where it is read from, first found wins:

1. the file ``SONIC_REGISTRY_CONFIG`` names (an error if it does not exist:
   a path the user typed must not be silently ignored);
2. ``<ComfyUI user dir>/sonic_registry/config.toml``;
3. nothing: the defaults below (built-in catalog only, the default policy).

Every key is optional::

    registry = "/srv/sonic-registry"      # directory or file:// / http(s):// URL
    trust = "trust.json"                  # needed with registry (relative: to this file)
    builtin_catalog = true                # the published Sonic files, label "published"
    models = ["sonic"]                    # model names a Sonic prompt may load
    locale = "auto"                       # auto (ComfyUI's setting) | en | zh

    [policy]                              # each: "refuse" | "warn" | "ignore"
    mixed = "refuse"                      # files from more than one release
    tampered = "refuse"                   # a release file's name and size, other bytes
    other_model = "refuse"                # a release of another model
    interface = "refuse"                  # old node interface, wrong model family
    missing = "refuse"                    # a file the nodes load is not there
    unknown = "warn"                      # bytes no known release lists
    community = "warn"                    # a community (non-official) release
    published = "ignore"                  # the authors' published, unsigned files
    params = "warn"                       # outside the recommended range
    params_outside_allowed = "refuse"     # outside the allowed range
    duration = "warn"                     # duration differs from the audio length

A malformed file is one line (file, key, expected, found); the guard then
refuses Sonic prompts with that line rather than run them unchecked.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from ..errors import InvalidManifest, UnreadableInputError

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_POLICY",
    "Action",
    "PackConfig",
    "load_config",
    "pack_dir",
]

CONFIG_ENV = "SONIC_REGISTRY_CONFIG"
Action = Literal["refuse", "warn", "ignore"]
_ACTIONS: tuple[Action, ...] = ("refuse", "warn", "ignore")

#: What the guard does about each kind of finding when the config says nothing.
DEFAULT_POLICY: Mapping[str, Action] = MappingProxyType(
    {
        "mixed": "refuse",
        "tampered": "refuse",
        "other_model": "refuse",
        "interface": "refuse",
        "missing": "refuse",
        "unknown": "warn",
        "community": "warn",
        "published": "ignore",
        "params": "warn",
        "params_outside_allowed": "refuse",
        "duration": "warn",
    }
)
_TOP_KEYS = frozenset({"registry", "trust", "builtin_catalog", "models", "locale", "policy"})
_LOCALES = ("auto", "en", "zh")


def pack_dir(user_dir: str | Path) -> Path:
    """The pack's own folder under ComfyUI's user directory (config, caches, audit log)."""
    return Path(user_dir) / "sonic_registry"


@dataclass(frozen=True)
class PackConfig:
    """Parsed settings; paths are absolute."""

    source: str  # the file read, or "defaults"
    registry: str | None = None
    trust: Path | None = None
    builtin_catalog: bool = True
    models: tuple[str, ...] = ("sonic",)
    locale: str = "auto"
    policy: Mapping[str, Action] = field(default_factory=lambda: DEFAULT_POLICY)

    def action(self, kind: str) -> Action:
        return self.policy.get(kind, "refuse")


def _bad(path: Path, key: str, expected: str, found: Any) -> InvalidManifest:
    return InvalidManifest(key, f"expected {expected}, found {found!r}", path=str(path))


def _relative_to(path: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else path.parent / p


def _policy(path: Path, raw: Any) -> Mapping[str, Action]:
    if not isinstance(raw, dict):
        raise _bad(path, "policy", "a table", raw)
    policy = dict(DEFAULT_POLICY)
    for key, value in raw.items():
        if key not in DEFAULT_POLICY:
            raise _bad(path, f"policy.{key}", f"one of {', '.join(DEFAULT_POLICY)}", key)
        if value not in _ACTIONS:
            raise _bad(path, f"policy.{key}", '"refuse", "warn" or "ignore"', value)
        policy[key] = value
    return MappingProxyType(policy)


def parse_config(path: Path, data: Mapping[str, Any]) -> PackConfig:
    """Check every key of a parsed config file; paths become absolute."""
    for key in data:
        if key not in _TOP_KEYS:
            raise _bad(path, key, f"one of {', '.join(sorted(_TOP_KEYS))}", key)
    registry = data.get("registry")
    if registry is not None and (not isinstance(registry, str) or not registry):
        raise _bad(path, "registry", "a directory or URL", registry)
    if isinstance(registry, str) and "://" not in registry:
        registry = str(_relative_to(path, registry))
    trust = data.get("trust")
    if trust is not None and (not isinstance(trust, str) or not trust):
        raise _bad(path, "trust", "the path of a trust.json", trust)
    if registry is not None and trust is None:
        raise _bad(path, "trust", "a trust.json path (a registry needs a trust store)", None)
    catalog = data.get("builtin_catalog", True)
    if not isinstance(catalog, bool):
        raise _bad(path, "builtin_catalog", "true or false", catalog)
    models = data.get("models", ["sonic"])
    if (
        not isinstance(models, list)
        or not models
        or not all(isinstance(m, str) and m for m in models)
    ):
        raise _bad(path, "models", "a non-empty list of model names", models)
    locale = data.get("locale", "auto")
    if locale not in _LOCALES:
        raise _bad(path, "locale", '"auto", "en" or "zh"', locale)
    return PackConfig(
        source=str(path),
        registry=registry,
        trust=_relative_to(path, trust) if isinstance(trust, str) else None,
        builtin_catalog=catalog,
        models=tuple(models),
        locale=locale,
        policy=_policy(path, data.get("policy", {})),
    )


def config_path(user_dir: str | Path | None) -> Path | None:
    """The config file to read, or None for the defaults (see the module docstring)."""
    named = os.environ.get(CONFIG_ENV)
    if named:
        return Path(named).expanduser()
    if user_dir is None:
        return None
    default = pack_dir(user_dir) / "config.toml"
    return default if default.is_file() else None


def load_config(user_dir: str | Path | None) -> PackConfig:
    """Read the config (``SONIC_REGISTRY_CONFIG`` or the user directory's) or the defaults."""
    path = config_path(user_dir)
    if path is None:
        return PackConfig(source="defaults")
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise UnreadableInputError(str(path), f"no such file (named by {CONFIG_ENV})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UnreadableInputError(str(path), f"cannot read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidManifest("", f"not valid TOML: {exc}", path=str(path)) from None
    return parse_config(path, data)
