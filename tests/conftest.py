"""Fixtures that build real signed bundles, keys and trust stores in tmp dirs.

The functions they use (and tests import) live in ``helpers.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers import SONIC_ROLES, Keys, release_toml, weight_bytes, write_safetensors
from sonic_install import WORKFLOWS

from sonic_registry.bundle import sign_bundle
from sonic_registry.signing import generate_key, save_private_key
from sonic_registry.trust import TrustStore


@pytest.fixture
def good_workflow() -> Path:
    """smthemex-ComfyUI_Sonic's real 20250216.json (UI format; use_interframe on, fps 25,
    min_resolution 512): the workflow every check accepts with the published files."""
    return WORKFLOWS / "smthemex-ComfyUI_Sonic" / "20250216.json"


@pytest.fixture
def make_key(tmp_path: Path) -> Callable[..., Keys]:
    counter = iter(range(1000))

    def make(
        name: str | None = None, algorithm: str = "ed25519", passphrase: bytes | None = None
    ) -> Keys:
        label = name or f"key{next(counter)}"
        key = generate_key(algorithm)
        key_path = tmp_path / "keys" / f"{label}.key"
        pub_path = tmp_path / "keys" / f"{label}.pub"
        key_path.parent.mkdir(exist_ok=True)
        save_private_key(key, key_path, passphrase)
        pub_path.write_text(key.public.to_pem())
        return Keys(key, key_path, pub_path)

    return make


@pytest.fixture
def official_key(make_key: Callable[..., Keys]) -> Keys:
    return make_key("official")


@pytest.fixture
def community_key(make_key: Callable[..., Keys]) -> Keys:
    return make_key("community")


@pytest.fixture
def trust_file(tmp_path: Path, official_key: Keys, community_key: Keys) -> Path:
    """trust.json trusting ``official_key`` (official) and ``community_key`` (community)."""
    path = tmp_path / "trust.json"
    store = (
        TrustStore()
        .with_key(official_key.private.public, ["official"], name="official")
        .with_key(community_key.private.public, ["community"], name="community")
    )
    store.save(path)
    return path


@pytest.fixture
def make_bundle(tmp_path: Path, official_key: Keys) -> Callable[..., Path]:
    """Build (and by default sign) a Sonic-shaped bundle; returns its directory.

    ``make_bundle("v13", version="1.3.0", step=80000)``; pass ``key=None`` with
    ``sign=False`` for an unsigned bundle, or ``key=community_key`` to sign as
    a community release (then give ``channel="community"``).
    """

    def make(
        name: str = "model",
        *,
        version: str = "1.3.0",
        serial: int = 1,
        channel: str = "official",
        step: int = 80000,
        key: Keys | None = None,
        sign: bool = True,
        files: Mapping[str, str] = SONIC_ROLES,
        **toml: Any,
    ) -> Path:
        root = tmp_path / name
        for role, fname in files.items():
            write_safetensors(root / fname, {"weight": weight_bytes(f"{version}/{step}/{role}")})
        (root / "release.toml").write_text(
            release_toml(
                version=version, serial=serial, channel=channel, step=step, files=files, **toml
            )
        )
        if sign:
            sign_bundle(root, (key or official_key).private)
        return root

    return make


#: End-to-end files (subprocesses, real git and pre-commit, torch, many TUF
#: repositories) that take most of the suite's time. ``make test-fast`` skips
#: them; ``make test`` and CI run everything. Listed here, in one place, so a
#: file's owner need not edit it to move it in or out.
SLOW_FILES = frozenset(
    {
        "test_bench_smoke.py",
        "test_cli_foundation.py",
        "test_cli_polish.py",
        "test_comfyui_e2e.py",
        "test_demo.py",
        "test_precommit_git.py",
        "test_readme.py",
        "test_registry_tuf_attacks.py",
        "test_runtime_cli.py",
        "test_runtime_cli_refusals.py",
        "test_runtime_generate.py",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_FILES:
            item.add_marker(pytest.mark.slow)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        default=False,
        help="Rewrite tests/golden/* from the current code instead of comparing.",
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))
