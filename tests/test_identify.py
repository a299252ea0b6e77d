"""identify: which checkpoint is this? (library and CLI, stat cache)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Keys
from sonic_install import dice_release, make_registry

from sonic_registry.cli import main
from sonic_registry.digest import StatCache
from sonic_registry.errors import UnreadableInputError
from sonic_registry.identify import identify_file, identify_files


@pytest.fixture
def setup(
    tmp_path: Path, trust_file: Path, make_bundle: Callable[..., Path], community_key: Keys
) -> tuple[Path, Path, Path]:
    v13 = make_bundle("v13", version="1.3.0", step=80000)
    dice = dice_release(make_bundle, community_key)
    make_registry(tmp_path / "reg", trust_file, [v13, dice]).close()
    return tmp_path / "reg", v13, dice


def test_identify_official_community_unknown(
    setup: tuple[Path, Path, Path], tmp_path: Path, trust_file: Path
) -> None:
    from sonic_registry.registry import Registry
    from sonic_registry.trust import TrustStore

    reg_dir, v13, dice = setup
    unknown = tmp_path / "mystery.pth"
    unknown.write_bytes(b"\x80\x02}q\x00." * 10)
    reg = Registry(reg_dir, TrustStore.load(trust_file))
    a, b, c = identify_files([v13 / "unet.safetensors", dice / "unet.safetensors", unknown], reg)
    assert (a.status, a.best.role, a.best.version) == ("official", "unet", "1.3.0")  # type: ignore[union-attr]
    assert "sonic 1.3.0 unet step 80000 (official)" in a.describe()
    assert (b.status, b.best.model) == ("community", "dice-talk")  # type: ignore[union-attr]
    assert "non-official" in b.describe()
    # A file in no release and in no Sonic place is unrelated, never "replace it".
    assert not c.known and c.status == "unrelated" and c.format == "pickle"
    assert "not part of any Sonic release" in c.describe() and "replace" not in c.describe()
    # The same bytes where ComfyUI_Sonic loads the audio encoder are an unknown Sonic file.
    (tmp_path / "sonic").mkdir()
    placed = tmp_path / "sonic" / "audio2token.pth"
    placed.write_bytes(unknown.read_bytes())
    (d,) = identify_files([placed], reg)
    assert d.status == "unknown" and "replace it with the published file" in d.describe()
    with pytest.raises(UnreadableInputError):
        identify_file(tmp_path / "absent.pth", reg)


def test_identify_uses_stat_cache_for_unchanged_files(
    setup: tuple[Path, Path, Path],
    tmp_path: Path,
    trust_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import os
    import time

    from sonic_registry.registry import Registry
    from sonic_registry.trust import TrustStore

    reg_dir, v13, _ = setup
    f = tmp_path / "copy.safetensors"
    f.write_bytes((v13 / "unet.safetensors").read_bytes())
    old = time.time() - 60
    os.utime(f, (old, old))
    # ctime is "now"; the cache ignores entries younger than RACY_SECONDS.
    monkeypatch.setattr(StatCache, "RACY_SECONDS", 0.0)
    reg = Registry(reg_dir, TrustStore.load(trust_file))
    cache = StatCache(tmp_path / "cache.json")
    first = identify_file(f, reg, stat_cache=cache)
    assert StatCache(tmp_path / "cache.json").get(f) is not None

    import sonic_registry.digest as digest

    def boom(*a: object, **k: object) -> object:
        raise AssertionError("re-hashed an unchanged file")

    monkeypatch.setattr(digest, "hash_files", boom)
    second = identify_file(f, reg, stat_cache=StatCache(tmp_path / "cache.json"))
    assert second.sha256 == first.sha256 and second.known


def test_cli_identify_exit_codes_and_json(
    setup: tuple[Path, Path, Path], tmp_path: Path, trust_file: Path
) -> None:
    reg_dir, v13, _ = setup
    common = ["--registry", str(reg_dir), "--trust", str(trust_file)]
    runner = CliRunner()
    out = runner.invoke(main, ["identify", str(v13 / "audio2token.safetensors"), *common])
    assert out.exit_code == 0, out.output
    assert "sonic 1.3.0 audio_encoder step 80000 (official)" in out.stdout
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"x" * 100)
    out = runner.invoke(
        main, ["identify", str(v13 / "unet.safetensors"), str(other), *common, "--json"]
    )
    assert out.exit_code == 1
    data = json.loads(out.stdout)
    assert [f["known"] for f in data["files"]] == [True, False]
    assert data["files"][0]["matches"][0]["release_id"] == "sonic@1.3.0#1"
    out = runner.invoke(main, ["identify", str(tmp_path / "nope"), *common])
    assert out.exit_code == 2 and "no such file" in out.stderr


def test_hash_with_cache_takes_any_digest_source(tmp_path: Path) -> None:
    from sonic_registry.digest import FileDigest, KnownDigests, hash_file, hash_with_cache

    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    vouched = FileDigest("00" * 32, 1)  # not a's real digest: the source is trusted
    assert hash_with_cache([a, b], stat_cache=KnownDigests({a: vouched})) == [
        vouched,
        hash_file(b),
    ]
