"""sonic-registry: signed release manifests for multi-checkpoint models.

The public API is imported lazily, so ``import sonic_registry`` costs almost
nothing and never pulls in torch, numpy or jsonschema. Other loaders call::

    from sonic_registry import verify_bundle
    verified = verify_bundle("checkpoints/Sonic", trust="trust.json")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "verify_bundle": "bundle",
    "sign_bundle": "bundle",
    "VerifiedRelease": "bundle",
    "load_verified": "loader",
    "load_state_dict_verified": "loader",
    "Release": "manifest",
    "Component": "manifest",
    "ParamRange": "manifest",
    "TrustStore": "trust",
    "errors": "",
}

__all__ = [
    "Component",
    "ParamRange",
    "Release",
    "TrustStore",
    "VerifiedRelease",
    "__version__",
    "errors",
    "load_state_dict_verified",
    "load_verified",
    "sign_bundle",
    "verify_bundle",
]

if TYPE_CHECKING:  # pragma: no cover
    from . import errors
    from .bundle import VerifiedRelease, sign_bundle, verify_bundle
    from .loader import load_state_dict_verified, load_verified
    from .manifest import Component, ParamRange, Release
    from .trust import TrustStore


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sonic_registry' has no attribute {name!r}")
    if module == "":
        return importlib.import_module(f".{name}", __name__)
    return getattr(importlib.import_module(f".{module}", __name__), name)
