"""The hook's trust input: a trust.json in the repo and/or pinned public keys."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..errors import UnreadableInputError
from ..fileio import read_regular

if TYPE_CHECKING:
    from ..trust import TrustStore

__all__ = ["Trust"]


class Trust(NamedTuple):
    """What the hook's ``args`` say to trust; loaded into a TrustStore only on a cache miss.

    A NamedTuple rather than a frozen dataclass: ``dataclasses`` (with
    ``inspect``) would be the largest import left on the warm path.
    """

    trust_path: Path | None = None
    public_keys: tuple[Path, ...] = ()

    def fingerprint(self) -> str:
        """sha256 over every trust input file, so any edit to one invalidates cached verdicts."""
        h = hashlib.sha256()
        for p in [self.trust_path, *self.public_keys]:
            if p is None:
                continue
            try:
                data = read_regular(p)
            except OSError as exc:
                raise UnreadableInputError(
                    str(p), f"cannot read the trust input: {exc.strerror}"
                ) from exc
            h.update(str(p).encode() + b"\0" + hashlib.sha256(data).digest())
        return h.hexdigest()

    def load(self) -> TrustStore:
        from ..signing import load_public_key
        from ..trust import TrustStore

        store = TrustStore.load(self.trust_path) if self.trust_path else TrustStore()
        return store.with_pinned(load_public_key(p) for p in self.public_keys)
