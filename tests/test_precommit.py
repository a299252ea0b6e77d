"""The hooks called in-process (``main([...])``) on real signed bundles in a tmp git repo.

The end-to-end runs through real ``git commit`` and the real ``pre-commit`` are
in ``test_precommit_git.py``; these cover every verdict and the caches.
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import replace_in_file

import sonic_registry.precommit as hook
import sonic_registry.precommit.cache as hook_cache
import sonic_registry.precommit.verify_hook as verify_hook
from sonic_registry.bundle import sign_bundle
from sonic_registry.digest import StatCache, hash_file
from sonic_registry.lfs import format_pointer
from sonic_registry.trust import TrustStore

MODEL = "models/v13"


@pytest.fixture
def repo(
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    trust_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.chdir(root)
    make_bundle(f"repo/{MODEL}", version="1.3.0")
    shutil.copyfile(trust_file, root / "trust.json")
    return root


@pytest.fixture
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let the caches keep entries for files written just now (tests of invalidation only)."""
    monkeypatch.setattr(hook_cache, "RACY_SECONDS", 0.0)
    monkeypatch.setattr(StatCache, "RACY_SECONDS", 0.0)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str]]:
    code = hook.main(list(args))
    out, err = capsys.readouterr()
    return code, out.splitlines() + err.splitlines()


def verify(capsys: pytest.CaptureFixture[str], *files: str) -> tuple[int, list[str]]:
    return run(capsys, "verify", "--trust", "trust.json", *files)


def flip_byte_keep_mtime(path: Path, offset: int) -> None:
    """Change content but keep size and mtime: only ctime (which no user can set) moves."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_mtime_ns == st.st_mtime_ns and path.stat().st_size == st.st_size


# --- verify: verdicts --------------------------------------------------------------


def test_clean_repo_is_silent(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert verify(capsys) == (0, [])


def test_changed_weight_is_one_line(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flip_byte_keep_mtime(repo / MODEL / "unet.safetensors", 200)
    code, lines = verify(capsys)
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith(f"{MODEL}/unet.safetensors: sha256: expected")


def test_added_unlisted_weight_is_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copyfile(repo / MODEL / "unet.safetensors", repo / MODEL / "unet_v2.safetensors")
    (repo / MODEL / "notes.txt").write_text("not a weight: only a warning elsewhere")
    code, lines = verify(capsys)
    assert code == 1
    assert lines == [
        f"{MODEL}/unet_v2.safetensors: weight file is not listed in the signed manifest "
        "(add it to release.toml and re-sign, or remove it)"
    ]


def test_pickle_content_under_any_name_counts_as_unlisted_weight(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / MODEL / "readme.dat").write_bytes(pickle.dumps({"w": [1.0]}, protocol=4))
    code, lines = verify(capsys)
    assert code == 1 and lines[0].startswith(f"{MODEL}/readme.dat: weight file is not listed")


def test_manifest_only_edit_is_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = repo / MODEL / "release.toml"
    replace_in_file(toml, "recommended = [\n    20,\n", "recommended = [\n    5,\n")
    code, lines = verify(capsys)
    assert code == 1
    assert lines == [
        f"{MODEL}/release.toml: size: expected {len(toml.read_bytes()) + 1} bytes, "
        f"found {len(toml.read_bytes())}"
    ]


def test_envelope_only_edit_is_refused(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = repo / MODEL / "release.dsse.json"
    doc = json.loads(env.read_text())
    payload = base64.b64decode(doc["payload"]).replace(b"80000", b"50000")  # step
    doc["payload"] = base64.b64encode(payload).decode()
    env.write_text(json.dumps(doc))
    code, lines = verify(capsys)
    assert code == 1
    assert lines == [
        f"{MODEL}/release.dsse.json: signature by official does not match the "
        "payload (edited or re-serialised after signing)"
    ]


def test_unsigned_bundle_is_refused(
    repo: Path, capsys: pytest.CaptureFixture[str], make_bundle: Callable[..., Path]
) -> None:
    make_bundle("repo/models/draft", version="1.4.0", sign=False)
    code, lines = verify(capsys)
    assert code == 1
    assert lines == [
        "models/draft/release.toml: expected a signed release.dsse.json beside it, found none "
        "(run `sonic-registry sign models/draft --key KEY`)"
    ]


def test_weight_outside_any_bundle_is_refused(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copyfile(repo / MODEL / "unet.safetensors", repo / "stray.safetensors")
    (repo / "README.md").write_text("docs")
    code, lines = verify(capsys, "stray.safetensors", "README.md", f"{MODEL}/unet.safetensors")
    assert code == 1
    assert lines == [
        "stray.safetensors: weight file outside any signed bundle (no release.dsse.json above it)"
    ]


def test_community_release_passes_with_a_trust_store(
    repo: Path,
    capsys: pytest.CaptureFixture[str],
    make_bundle: Callable[..., Path],
    community_key: object,
) -> None:
    make_bundle("repo/models/fork", version="1.3.5", channel="community", key=community_key)
    assert verify(capsys) == (0, [])


def test_pinned_public_key_instead_of_trust_store(
    repo: Path, capsys: pytest.CaptureFixture[str], official_key: object
) -> None:
    pub = official_key.pub_path  # type: ignore[attr-defined]
    assert run(capsys, "verify", "--public-key", str(pub)) == (0, [])


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["verify"], "no trusted keys"),
        (["verify", "--trust", "missing.json"], "missing.json"),
        (["bogus"], "invalid choice"),
        ([], "required"),
    ],
)
def test_usage_errors_exit_2(
    repo: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code, lines = run(capsys, *args)
    assert code == 2
    assert any(needle in line for line in lines)


# --- verify: LFS pointers ----------------------------------------------------------


def test_lfs_pointer_with_signed_oid_passes_and_wrong_oid_fails(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unet = repo / MODEL / "unet.safetensors"
    real = hash_file(unet)
    unet.write_bytes(format_pointer(real.sha256, real.size))
    assert verify(capsys) == (0, [])
    unet.write_bytes(format_pointer("0" * 64, real.size))
    code, lines = verify(capsys)
    assert code == 1
    assert lines == [
        f"{MODEL}/unet.safetensors: LFS pointer oid: expected sha256:{real.sha256[:16]}..., "
        f"found {'0' * 16}..."
    ]
    unet.write_bytes(format_pointer(real.sha256, real.size + 1))
    assert verify(capsys)[1] == [
        f"{MODEL}/unet.safetensors: LFS pointer size: expected {real.size} bytes, "
        f"found {real.size + 1}"
    ]
    unet.write_bytes(b"version https://git-lfs.github.com/spec/v1\nsize 1\n")
    code, lines = verify(capsys)
    assert code == 1 and "malformed LFS pointer" in lines[0] and "oid" in lines[0]


# --- verify: caches ----------------------------------------------------------------


def test_stale_cache_entries_never_let_a_changed_file_pass(
    repo: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    time.sleep(StatCache.RACY_SECONDS + 0.2)  # let the files leave the racy window
    assert verify(capsys) == (0, [])
    cache_dir = repo / ".git" / "sonic-registry"
    verdicts = json.loads((cache_dir / "verdicts.json").read_text())["bundles"]
    assert list(verdicts) == [os.path.realpath(repo / MODEL)]
    unet = repo / MODEL / "unet.safetensors"
    assert StatCache(cache_dir / "statcache.json").get(unet) == hash_file(unet)

    # Unchanged: the warm path answers without running the full check at all.
    def boom(*args: object) -> None:
        raise AssertionError("warm path expected")

    with monkeypatch.context() as m:
        m.setattr(verify_hook, "_full_check", boom)
        assert verify(capsys) == (0, [])

    # Same size, same mtime, other content: both cache layers must miss.
    flip_byte_keep_mtime(unet, 300)
    assert StatCache(cache_dir / "statcache.json").get(unet) is None
    code, lines = verify(capsys)
    assert code == 1 and lines[0].startswith(f"{MODEL}/unet.safetensors: sha256: expected")
    assert json.loads((cache_dir / "verdicts.json").read_text())["bundles"] == {}


def test_trust_file_edit_invalidates_the_cached_verdict(
    repo: Path,
    capsys: pytest.CaptureFixture[str],
    no_racy_window: None,
    make_key: Callable[..., object],
) -> None:
    assert verify(capsys) == (0, [])
    other = make_key("other").private.public  # type: ignore[attr-defined]
    TrustStore().with_key(other, ["official"], name="other").save(repo / "trust.json")
    code, lines = verify(capsys)
    assert code == 1
    assert lines[0].startswith(f"{MODEL}/release.dsse.json: signed by unknown key")


def test_expired_verdict_is_rechecked(
    repo: Path,
    capsys: pytest.CaptureFixture[str],
    no_racy_window: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert verify(capsys) == (0, [])
    path = repo / ".git" / "sonic-registry" / "verdicts.json"
    data = json.loads(path.read_text())
    for entry in data["bundles"].values():
        entry["until"] = time.time() - 1
    path.write_text(json.dumps(data))
    calls: list[object] = []
    real = verify_hook._full_check
    monkeypatch.setattr(verify_hook, "_full_check", lambda *a: calls.append(a) or real(*a))
    assert verify(capsys) == (0, [])
    assert len(calls) == 1


def test_sharded_file_checked_by_shard_and_cached_whole(
    repo: Path,
    capsys: pytest.CaptureFixture[str],
    make_bundle: Callable[..., Path],
    official_key: object,
    no_racy_window: None,
) -> None:
    root = make_bundle("repo/models/big", version="1.3.2", sign=False)
    sign_bundle(root, official_key.private, shard_size=256)  # type: ignore[attr-defined]
    unet = root / "unet.safetensors"
    assert verify(capsys) == (0, [])
    cache = StatCache(repo / ".git" / "sonic-registry" / "statcache.json")
    assert cache.get(unet) == hash_file(unet)  # the whole-file digest, from matching shards
    flip_byte_keep_mtime(unet, 600)
    code, lines = verify(capsys)
    assert code == 1
    assert lines == [
        "models/big/unet.safetensors: sha256: content differs from the signed file at "
        "bytes 512..768 (shard 2)"
    ]


def test_no_cache_option_writes_nothing(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "verify", "--trust", "trust.json", "--no-cache") == (0, [])
    assert not (repo / ".git" / "sonic-registry").exists()


def test_cache_falls_back_outside_git(
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    trust_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = tmp_path / "plain"
    make_bundle("plain/m", version="1.3.0")
    monkeypatch.chdir(root)
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    assert hook.git_dir() is None  # no repository anywhere above: the fallback applies
    assert not (root / ".cache").exists()
    # The bundle was just written: without this, nothing would be cached (racy clean).
    monkeypatch.setattr(hook_cache, "RACY_SECONDS", 0.0)
    monkeypatch.setattr(StatCache, "RACY_SECONDS", 0.0)
    assert run(capsys, "verify", "--trust", str(trust_file)) == (0, [])
    # default_cache_dir(): .cache/sonic-registry under the directory the hook runs in.
    cache_dir = root / ".cache" / "sonic-registry"
    verdicts = json.loads((cache_dir / "verdicts.json").read_text())["bundles"]
    assert list(verdicts) == [os.path.realpath(root / "m")]


# --- no-pickle ---------------------------------------------------------------------


def test_no_pickle_refuses_pickles_by_content(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "a.safetensors").write_bytes(pickle.dumps({"w": 1}, protocol=2))  # lying name
    with zipfile.ZipFile(repo / "b.pt", "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"w": 1}))
    (repo / "ok.pth").write_bytes((repo / MODEL / "unet.safetensors").read_bytes())
    code, lines = run(capsys, "no-pickle", "a.safetensors", "b.pt", "ok.pth", MODEL)
    assert code == 1
    assert lines == [
        "a.safetensors: pickle checkpoint (pickle): loading it runs code; convert it with "
        "`sonic-registry convert a.safetensors a.safetensors`",
        "b.pt: pickle checkpoint (torch-zip): loading it runs code; convert it with "
        "`sonic-registry convert b.pt b.safetensors`",
    ]
    assert run(capsys, "no-pickle", "ok.pth", f"{MODEL}/unet.safetensors") == (0, [])


def test_no_pickle_on_lfs_pointers_uses_local_object_or_name(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    safe = (repo / MODEL / "unet.safetensors").read_bytes()
    digest = hash_file(repo / MODEL / "unet.safetensors")
    (repo / "w.pth").write_bytes(format_pointer(digest.sha256, digest.size))
    code, lines = run(capsys, "no-pickle", "w.pth")
    assert code == 1 and lines[0].startswith("w.pth: LFS pointer to a .pth checkpoint")
    obj = repo / ".git" / "lfs" / "objects" / digest.sha256[:2] / digest.sha256[2:4]
    obj.mkdir(parents=True)
    (obj / digest.sha256).write_bytes(safe)
    assert run(capsys, "no-pickle", "w.pth") == (0, [])
    (obj / digest.sha256).write_bytes(pickle.dumps({"w": 1}, protocol=4))
    code, lines = run(capsys, "no-pickle", "w.pth")
    assert code == 1 and lines[0].startswith("w.pth: pickle checkpoint (pickle)")


def test_under_limits_bundles_and_loose_files(
    repo: Path, capsys: pytest.CaptureFixture[str], make_bundle: Callable[..., Path]
) -> None:
    make_bundle("repo/other/draft", version="1.4.0", sign=False)  # outside --under
    (repo / "stray.safetensors").write_bytes(b"x" * 16)
    args = ("verify", "--trust", "trust.json", "--under", "models")
    assert run(capsys, *args, "stray.safetensors") == (0, [])
    assert verify(capsys)[0] == 1
    code, lines = run(capsys, *args[:3], "--under", "nope")
    assert code == 2 and "--under nope: expected a directory" in lines[0]
    (repo / "empty").mkdir()
    code, lines = run(capsys, *args[:3], "--under", "empty")
    assert code == 2 and "no bundle" in lines[0]


def test_rollback_and_revocation_in_the_trust_file_are_enforced(
    repo: Path, capsys: pytest.CaptureFixture[str], official_key: object
) -> None:
    data = json.loads((repo / "trust.json").read_text())
    data["serials"] = {"sonic@1.3.0": 2}
    (repo / "trust.json").write_text(json.dumps(data))
    code, lines = verify(capsys)
    assert code == 1
    assert lines == [
        f"{MODEL}/release.dsse.json: serial: expected >= 2 (already seen for sonic@1.3.0), "
        "found 1: refusing a rollback to an older manifest"
    ]
    store = TrustStore.load(repo / "trust.json")
    store.with_revoked(official_key.keyid).save(repo / "trust.json")  # type: ignore[attr-defined]
    code, lines = verify(capsys)
    assert code == 1 and lines[0].startswith(f"{MODEL}/release.dsse.json: signed by revoked key")


# --- workflows ---------------------------------------------------------------------

PIPELINE = """
[params]
inference_steps = {steps}
seed = 7

[nodes.audio_encoder]
file = "models/v13/audio2token.safetensors"

[nodes.unet]
file = "models/{unet}/unet.safetensors"
"""


def workflows_run(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, list[str]]:
    return run(capsys, "workflows", "--trust", "trust.json", *extra)


def test_workflows_one_release_in_range_passes_and_warnings_do_not_fail(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (repo / "good.toml").write_text(PIPELINE.format(steps=25, unet="v13"))
    (repo / "meh.toml").write_text(PIPELINE.format(steps=40, unet="v13"))  # > recommended
    assert workflows_run(capsys) == (0, [])


def test_workflows_refuse_mixed_releases_and_out_of_range_params(
    repo: Path, capsys: pytest.CaptureFixture[str], make_bundle: Callable[..., Path]
) -> None:
    make_bundle("repo/models/v12", version="1.2.0", step=50000)
    (repo / "mixed.toml").write_text(PIPELINE.format(steps=25, unet="v12"))
    (repo / "fast.toml").write_text(PIPELINE.format(steps=5, unet="v13"))
    code, lines = workflows_run(capsys)
    assert code == 1
    assert lines[0] == (
        "fast.toml: inference_steps=5 is below the allowed 15..100: "
        "below 20 steps the video gets blurry"
    )
    assert lines[1].startswith("mixed.toml: ") and "releases must not be mixed" in lines[1]
    assert len(lines) == 2
    # Only the files named are checked when names are given.
    assert workflows_run(capsys, "fast.toml")[1] == lines[:1]


def test_workflows_with_an_external_registry(
    repo: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from sonic_install import make_registry

    make_registry(tmp_path / "reg", repo / "trust.json", [repo / MODEL]).close()
    # The weights live outside the repo (a ComfyUI models folder); the repo has no bundle.
    shutil.move(repo / "models", tmp_path / "models")
    (repo / "good.toml").write_text(PIPELINE.format(steps=25, unet="v13"))
    outside = ("--models-dir", str(tmp_path))
    assert workflows_run(capsys, "--registry", str(tmp_path / "reg"), *outside) == (0, [])
    code, lines = workflows_run(capsys, *outside)  # no registry and no bundle in the repo
    assert code == 1 and "is unknown to the registry" in lines[0]


def test_workflows_missing_files_name_their_workflow(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two workflows load files that are not there: each line says which workflow."""
    (repo / "a.toml").write_text(PIPELINE.format(steps=25, unet="gone-a"))
    (repo / "b.toml").write_text(PIPELINE.format(steps=25, unet="gone-b"))
    code, lines = workflows_run(capsys)
    assert code == 1
    missing = [line for line in lines if "no such file" in line]
    assert [line.split(": ")[:2] for line in missing] == [
        ["a.toml", "models/gone-a/unet.safetensors"],
        ["b.toml", "models/gone-b/unet.safetensors"],
    ]
    # and relative to --models-dir when the weights live elsewhere
    (repo / "elsewhere").mkdir()
    shutil.move(repo / "models", repo / "elsewhere" / "models")
    code, lines = workflows_run(capsys, "--models-dir", "elsewhere", "a.toml")
    assert code == 1
    assert [line for line in lines if "no such file" in line] == [
        "a.toml: elsewhere/models/gone-a/unet.safetensors: no such file "
        "(loaded by node unet (component) file)"
    ]


def test_is_workflow_by_content() -> None:
    data = Path(__file__).parent / "data"
    assert hook.is_workflow(data / "workflows" / "smthemex-ComfyUI_Sonic" / "example.json")
    assert hook.is_workflow(data / "precommit" / "sonic.pipeline.toml")
    assert not hook.is_workflow(data / "precommit" / "trust.json")
    assert not hook.is_workflow(data / "precommit" / "sonic" / "release.toml")
    assert not hook.is_workflow(data / "precommit" / "sonic" / "release.dsse.json")


def test_bundle_at_the_repository_root(
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    trust_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hugging Face style: the weights and release.toml sit at the top of the repo."""
    root = make_bundle("hf", version="1.3.0")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.chdir(root)
    shutil.copyfile(trust_file, root / "trust.json")  # unsigned, not a weight: allowed
    (root / "README.md").write_text("model card\n")
    assert verify(capsys, "README.md", "unet.safetensors") == (0, [])
    flip_byte_keep_mtime(root / "audio2bucket.safetensors", 100)
    code, lines = verify(capsys)
    assert code == 1 and lines[0].startswith("audio2bucket.safetensors: sha256: expected")


def test_workflows_real_comfyui_workflow_and_a_swapped_unet(
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    trust_file: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The ComfyUI_Sonic example workflow over a ComfyUI models folder, as a repo holds it."""
    from sonic_install import WORKFLOWS, install, sonic_release

    root = tmp_path / "comfy"
    v13 = sonic_release(make_bundle, "comfy/bundles/v13", version="1.3.0", step=80000)
    v12 = sonic_release(make_bundle, "comfy/bundles/v12", version="1.2.0", step=50000)
    install(v13, root / "models")
    shutil.copyfile(WORKFLOWS / "smthemex-ComfyUI_Sonic" / "example.json", root / "sonic.json")
    shutil.copyfile(trust_file, root / "trust.json")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    monkeypatch.delenv("GIT_DIR", raising=False)
    monkeypatch.chdir(root)
    args = ("--models-dir", "models")
    assert workflows_run(capsys, *args) == (0, [])
    # A step-50000 unet dropped into the Sonic folder under the same file name.
    shutil.copyfile(v12 / "unet.pth", root / "models" / "sonic" / "unet.pth")
    code, lines = workflows_run(capsys, *args)
    assert code == 1
    assert lines[0].startswith("sonic.json: ") and "releases must not be mixed" in lines[0]
    assert "unet is sonic 1.2.0 step 50000" in lines[0]
