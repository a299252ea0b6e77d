"""Where model files live: one models folder, or ComfyUI's folders by name.

The CLI's ``--models-dir`` is one folder: a graph's ``sonic/unet.pth`` is
``<models-dir>/sonic/unet.pth``. ComfyUI searches more: a loader's file name is
looked up in every folder registered under its folder name (``checkpoints``,
``sonic``, ...), its own ``models/<name>`` and those ``extra_model_paths.yaml``
adds, in ``folder_paths.folder_names_and_paths`` order, and the first folder
holding the file wins (``folder_paths.get_full_path``). :class:`ModelFolders`
holds both shapes so the resolver finds each file where the node loads it from.

A file a node loads from a fixed path (ComfyUI_Sonic's ``audio2token.pth``,
always ``models/sonic/audio2token.pth``) is never searched for: its
:class:`~sonic_registry.workflows.WeightRef` has no ``folder``.

Every file found is confined with :func:`sonic_registry.confine.confined`, the
project's one rule: a link is followed only while it stays inside the models
folder (for a file found there) or the extra folder it was found in, or inside
the folder its name starts in, resolved (``models/sonic`` may itself be a link
to another disk); any other link is refused, never followed. Each folder as
:func:`sonic_registry.doctor.link_root` sees it, so a Hugging Face snapshot's
links may reach their own cache's ``blobs/``, as ``doctor`` and ``identify`` allow.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from .confine import confined
from .errors import UnreadableInputError, UnsafePathError

__all__ = ["NOT_MODEL_FOLDERS", "ModelFolders", "as_model_folders", "comfyui_folder_lists"]

#: Names in ComfyUI's folder table whose folders hold code, not model files.
NOT_MODEL_FOLDERS = frozenset({"custom_nodes"})


@dataclass(frozen=True)
class ModelFolders:
    """The models folder, and the folders searched for each folder name, in order.

    ``searched`` maps a folder name to the base directories ComfyUI searches
    for it, first first. Empty for the CLI: every name is under ``root``.
    """

    root: Path
    searched: Mapping[str, tuple[Path, ...]] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def comfyui(cls, models_dir: str | Path, folders: Mapping[str, Iterable[str]]) -> ModelFolders:
        """From ComfyUI's ``models_dir`` and ``{folder name: [base directory, ...]}``."""
        searched = {name: tuple(Path(p) for p in paths) for name, paths in folders.items()}
        return cls(Path(models_dir), MappingProxyType(searched))

    def places(self, folder: str, rel: str) -> tuple[tuple[Path, str], ...]:
        """Where ``rel`` (``<folder>/<name>``, relative to the models folder) may be:
        ``(base directory, name inside it)`` pairs in the order they are searched.

        ``folder`` is the folder name a node searches (``""`` for a fixed path).
        """
        bases = self.searched.get(folder) if folder else None
        prefix = f"{folder}/"
        if bases and rel.startswith(prefix):
            return tuple((base, rel[len(prefix) :]) for base in bases)
        return ((self.root, rel),)

    def locate(self, folder: str, rel: str) -> Path | None:
        """The file ComfyUI would load for ``rel``: the first place holding a file.

        Raises :class:`~sonic_registry.errors.UnsafePathError` when that file is a
        link leading out of the folder it was found in. None when no place has it.
        """
        for base, name in self.places(folder, rel):
            path = base / name
            if path.is_file():
                real = os.path.realpath(path)
                roots = self._link_roots(base, name)
                root = next((r for r in roots if Path(real).is_relative_to(r)), None)
                if root is None:
                    raise UnsafePathError(
                        str(path), f"expected a file inside {base}, found a link to {real}"
                    )
                real = confined(base, str(root), name)  # a regular file (not a FIFO, ...)
                return Path(real) if path.is_symlink() else path
        return None

    def _link_roots(self, base: Path, name: str) -> tuple[Path, ...]:
        """The folders a file found at ``base/name`` may lead into through links.

        The models folder, for every folder inside it (so ``check``, the guard and
        ``resolve`` agree on a link from ``checkpoints/`` into another folder of
        ``models/``); an extra folder, for itself. And the folder the name starts
        in, resolved: ``models/sonic`` may itself be a link to another disk, as
        ComfyUI users often make it. Each as :func:`~sonic_registry.doctor.link_root`
        sees it (a Hugging Face snapshot may reach its cache's ``blobs/``).
        """
        from .doctor import link_root

        inside = base.resolve().is_relative_to(self.root.resolve())
        roots = [link_root(self.root if inside else base)]
        parts = PurePosixPath(name).parts
        if len(parts) > 1:
            roots.append(link_root(base / parts[0]))
        return tuple(roots)

    def missing(self, folder: str, rel: str, loaded_by: str) -> UnreadableInputError:
        """``rel`` is in none of the places it is loaded from: the error says where we looked.

        With one models folder, the message the CLI has always printed.
        """
        if self.is_searched(folder):
            return UnreadableInputError(
                rel,
                f"no such file in {self.searched_text(folder, rel)} "
                f"(ComfyUI's {folder!r} folders, searched in this order; {loaded_by})",
            )
        where = str(self.root / rel)
        first = PurePosixPath(rel).parts[0]
        if any(base != self.root / first for base in self.searched.get(first, ())):
            return UnreadableInputError(
                where,
                f"no such file ({loaded_by}); the node loads it from this path only, not from "
                f"ComfyUI's other {first!r} folders ({self.searched_text(first, rel)})",
            )
        return UnreadableInputError(where, f"no such file ({loaded_by})")

    def searched_text(self, folder: str, rel: str) -> str:
        """The folders searched for ``rel``, for a message: ``'a', 'b'``."""
        return ", ".join(repr(str(base)) for base, _ in self.places(folder, rel))

    def is_searched(self, folder: str) -> bool:
        """Whether a name in ``folder`` is looked up in ComfyUI's folder list."""
        return bool(folder and self.searched.get(folder))

    def extra_dirs(self) -> tuple[Path, ...]:
        """Searched folders outside the models folder (``extra_model_paths.yaml``'s),
        each once, in order; those that do not exist are left out."""
        root = self.root.resolve()
        out: dict[Path, Path] = {}
        for bases in self.searched.values():
            for base in bases:
                real = base.resolve()
                if not real.is_relative_to(root) and real not in out and real.is_dir():
                    out[real] = base
        return tuple(out.values())


def as_model_folders(models: str | Path | ModelFolders) -> ModelFolders:
    """A :class:`ModelFolders` for a plain models folder (or the value itself)."""
    return models if isinstance(models, ModelFolders) else ModelFolders(Path(models))


def comfyui_folder_lists(table: Mapping[Any, Any]) -> dict[str, list[str]]:
    """``{folder name: [base directory, ...]}`` from ComfyUI's ``folder_names_and_paths``
    (``{name: ([directory, ...], extensions)}``), for :meth:`ModelFolders.comfyui`.

    ``custom_nodes`` is left out: no loader reads a model from it, and the check
    would walk (and sniff) every custom node's files. So is an entry of another
    shape (a custom node's mistake ComfyUI could not search either): a bare
    string would otherwise be read letter by letter, ``"/"`` first.
    """
    out: dict[str, list[str]] = {}
    for name, entry in table.items():
        if not isinstance(name, str) or name in NOT_MODEL_FOLDERS:
            continue
        paths = entry[0] if isinstance(entry, tuple | list) and entry else None
        if isinstance(paths, list | tuple):
            out[name] = [os.fspath(p) for p in paths if isinstance(p, str | os.PathLike)]
    return out
