"""Keeps pytest from importing the library twice because of the root ``__init__.py``.

The root ``__init__.py`` is ComfyUI's entry point for a git clone. With it,
pytest's default import mode takes the checkout folder for a package and
``--doctest-modules`` would import ``sonic_registry/x.py`` as
``<folder>.sonic_registry.x``: a second copy of every module beside the
``sonic_registry.x`` the tests use (two registries of globals, two classes of
each error). This finder answers an import of ``<folder>.<name>`` with the
module ``<name>`` itself, so each file runs once, under its real name, and
doctest ids stay ``sonic_registry.x``. tests/test_comfyui_clone.py checks it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent


class _SameModule(importlib.abc.Loader):
    def __init__(self, real: str) -> None:
        self.real = real
        self.spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = importlib.import_module(self.real)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        module.__spec__ = self.spec  # the import system set the alias's spec; put back the real one


class _CheckoutAlias(importlib.abc.MetaPathFinder):
    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: types.ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        root, dot, real = fullname.partition(".")
        if root != ROOT.name or not dot or real == "conftest":
            return None
        return importlib.machinery.ModuleSpec(fullname, _SameModule(real))


if not any(isinstance(f, _CheckoutAlias) for f in sys.meta_path):
    sys.meta_path.insert(0, _CheckoutAlias())
