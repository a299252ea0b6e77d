"""cli.registry.SourceOptions: where a command's releases come from, by name.

identify, resolve, doctor and check-params --workflow all open their releases with
``open_known(SourceOptions(...))``; a field read from the wrong position (the old
unnamed tuple) would swap a registry for a trust store or drop the catalog switch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest
from sonic_install import make_registry, sonic_release

from sonic_registry.cli.registry import SourceOptions, open_known
from sonic_registry.digest import hash_file
from sonic_registry.errors import UsageError


def test_open_known_reads_each_named_field(
    tmp_path: Path, trust_file: Path, make_bundle: Callable[..., Path]
) -> None:
    v13 = sonic_release(make_bundle, "v13", version="1.3.0", step=80000)
    make_registry(tmp_path / "reg", trust_file, [v13])
    unet = hash_file(v13 / "unet.pth").sha256
    only_registry = SourceOptions(
        location=str(tmp_path / "reg"), trust_path=trust_file, public_keys=(),
        no_builtin_catalog=True,
    )  # fmt: skip
    with open_known(only_registry) as known:
        assert [m.statement.release.release_id for m in known.lookup(unet)] == ["sonic@1.3.0#1"]
    with pytest.raises(UsageError, match="give --registry"):
        open_known(dataclasses.replace(only_registry, location=None))
    with pytest.raises(dataclasses.FrozenInstanceError):
        only_registry.location = None  # type: ignore[misc]
