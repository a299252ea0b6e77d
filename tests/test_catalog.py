"""The built-in catalog of the published Sonic files, and the verdicts it makes possible.

The models trees here are built from Git LFS pointers carrying the real
published oids and sizes (what a ``git clone`` without git-lfs leaves), plus
unrelated checkpoints and random bytes where Sonic's files belong. Nothing is
downloaded. Where a test needs the published *bytes*, it uses a catalog parsed
from the shipped data file with the digests of small local files put in.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from importlib import resources
from pathlib import Path

import pytest
from click.testing import CliRunner

import sonic_registry
from sonic_registry.catalog import LABEL, label_text, load_catalog, parse_catalog
from sonic_registry.cli import main
from sonic_registry.doctor import diagnose, link_target
from sonic_registry.identify import identify_files
from sonic_registry.known import KnownReleases
from sonic_registry.lfs import format_pointer
from sonic_registry.resolver import analyze_graph, load_graph

WORKFLOWS = Path(__file__).parent / "data" / "workflows"
#: The three correct real workflows (current node interface).
CORRECT = (
    "smthemex-ComfyUI_Sonic/example.json",
    "smthemex-ComfyUI_Sonic/20250216.json",
    "frankpeng1218-Comfyui_AI_from_0_2025course/sonic.json",
)
#: The published digests and sizes (research/sonic-published-files.md).
PUBLISHED = {
    "unet": ("2fb0b0b8fe07232f9c4e8af4ce64fc3b33593bf6dfd7c840b60585dc6017128b", 6303636358),
    "audio_encoder": (
        "68cf305813bf5e4682c4f6a80955233cfad6a5e194fd4a6963f27e4e8ee490d8",
        217206084,
    ),
    "motion_decoder": (
        "4af942fded37b70d0a0a7993b8c0f46b5b1e104bcf7b6316f7b509900db69d26",
        87050998,
    ),
    "interpolator": ("fe854fc8996547c953f732aaa3b78cae76cc0a12833ae856ea0749c4c570d7d8", 12186817),
    "face_detector": (
        "5ef5928d2ee1350ea7050ad7524b26a2b55e5c69fee49cd499667bde6a215b17",
        84574759,
    ),
}
SVD_SHA = "69ccfea1bb45dd63b3ba8b6cfe8b0d45d780995dfdde590aeaa97cc567018d33"
FLAT = {
    "unet": "sonic/unet.pth",
    "audio_encoder": "sonic/audio2token.pth",
    "motion_decoder": "sonic/audio2bucket.pth",
    "interpolator": "sonic/RIFE/flownet.pkl",
    "face_detector": "sonic/yoloface_v5m.pt",
}
NESTED = {
    "unet": "checkpoints/Sonic/unet.pth",
    "audio_encoder": "checkpoints/Sonic/audio2token.pth",
    "motion_decoder": "checkpoints/Sonic/audio2bucket.pth",
    "interpolator": "checkpoints/RIFE/flownet.pkl",
    "face_detector": "checkpoints/yoloface_v5m.pt",
}
DRIVE = {
    "unet": "Sonic/unet.pth",
    "audio_encoder": "Sonic/audio2token.pth",
    "motion_decoder": "Sonic/audio2bucket.pth",
    "interpolator": "RIFE/flownet.pkl",
    "face_detector": "yoloface_v5m.pt",
}


def pointer_tree(root: Path, layout: dict[str, str]) -> Path:
    """A clone without git-lfs: every published file is a pointer with its real oid and size."""
    for role, rel in layout.items():
        oid, size = PUBLISHED[role]
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(format_pointer(oid, size))
    return root


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _junk(tag: str, size: int = 4096) -> bytes:
    return (hashlib.sha256(tag.encode()).digest() * (size // 32 + 1))[:size]


def local_catalog(files: dict[str, Path]):  # type: ignore[no-untyped-def]
    """The shipped catalog with the digests of ``files`` (role -> local file) put in."""
    doc = json.loads(
        resources.files("sonic_registry.catalog").joinpath("sonic-2025.1.14.json").read_bytes()
    )
    for role, path in files.items():
        data = path.read_bytes()
        doc["components"][role]["sha256"] = hashlib.sha256(data).hexdigest()
        doc["components"][role]["size"] = len(data)
    return parse_catalog([json.dumps(doc).encode()])


# --- the catalog as data ----------------------------------------------------------


def test_catalog_lists_every_published_file_with_its_digest_and_layouts() -> None:
    cat = load_catalog()
    (release,) = cat.releases
    assert (release.model, release.version, release.key) == (
        "sonic",
        "2025.1.14",
        "sonic@2025.1.14",
    )
    for role, (sha, size) in PUBLISHED.items():
        f = cat.by_sha256(sha)
        assert f is not None and (f.role, f.size) == (role, size)
        assert cat.by_lfs(sha, size) is f
        assert cat.by_lfs(sha, size + 1) is None  # the oid alone is not enough
        for layout in (FLAT, NESTED, DRIVE):
            assert cat.by_path(f"/home/u/ComfyUI/models/{layout[role]}") is f
    svd = cat.by_sha256(SVD_SHA)
    assert svd is not None and svd.role == "svd" and svd.size is None
    assert cat.by_path("models/checkpoints/svd_xt_1_1.safetensors") is svd
    whisper = release.file_for_role("whisper")
    assert whisper is not None and whisper.sha256 is None and "not recorded" in whisper.note
    assert cat.by_path("checkpoints/whisper-tiny/model.safetensors") is whisper
    assert cat.by_path("checkpoints/sd15.safetensors") is None
    # Every file in ComfyUI's models/sonic/ is offered as sonic_unet: a UNet candidate.
    assert cat.by_path("models/sonic/my_finetune.pth") is cat.by_sha256(PUBLISHED["unet"][0])
    assert cat.by_path("models/sonic/RIFE/other.pkl") is None


def test_catalog_release_is_published_not_official_and_carries_the_ranges() -> None:
    rel = load_catalog().releases[0].release()
    assert rel.channel == LABEL == "published" and rel.channel != "official"
    assert "not signed by the authors" in label_text()
    steps, scale, motion, res = (
        rel.params[n]
        for n in ("inference_steps", "dynamic_scale", "motion_scale", "min_resolution")
    )
    assert steps.recommended == (20, 30) and steps.allowed is not None and steps.allowed[0] == 15
    assert scale.recommended == (1.0, 1.2) and scale.allowed is not None and scale.allowed[1] == 1.3
    assert (
        motion.recommended == (1.0, 1.1) and motion.allowed is not None and motion.allowed[1] == 1.2
    )
    assert res.recommended is not None and res.recommended[0] == 768
    assert res.allowed is not None and res.allowed[0] == 512
    assert (
        rel.data["fps_with_interpolation"] == 25 and rel.data["fps_without_interpolation"] == 12.5
    )
    assert rel.data["sample_rate"] == 16000


# --- real layouts -------------------------------------------------------------------


@pytest.mark.parametrize("layout", [FLAT, NESTED, DRIVE], ids=["comfyui", "official", "drive"])
def test_doctor_on_pointer_trees_says_not_downloaded(
    tmp_path: Path, layout: dict[str, str]
) -> None:
    root = pointer_tree(tmp_path / "models", layout)
    _write(root / "checkpoints/v1-5-pruned-emaonly.safetensors", _junk("sd15"))
    _write(root / "loras/style.safetensors", _junk("lora"))
    out = CliRunner().invoke(main, ["doctor", str(root), "--json"])
    assert out.exit_code == 1, out.output
    rows = {r["path"]: r for r in json.loads(out.stdout)["files"]}
    for role, rel in layout.items():
        row = rows[rel]
        assert (row["status"], row["role"], row["release"]) == (
            "not-downloaded",
            role,
            "sonic@2025.1.14",
        )
        assert "git lfs pull" in row["advice"] and "published" in row["advice"]
    for rel in ("checkpoints/v1-5-pruned-emaonly.safetensors", "loras/style.safetensors"):
        row = rows[rel]
        assert (row["status"], row["release"], row["role"]) == ("unrelated", None, None)
        assert "not part of any Sonic release" in row["advice"]
        assert "replace" not in row["advice"] and not row["problem"]


def test_random_unet_is_a_non_official_checkpoint(tmp_path: Path) -> None:
    root = pointer_tree(tmp_path / "models", {k: v for k, v in FLAT.items() if k != "unet"})
    _write(root / "sonic/unet.pth", b"\x80\x02}q\x00." + _junk("unet"))
    (ident,) = identify_files([root / "sonic/unet.pth"], KnownReleases.builtin())
    assert ident.status == "unknown"
    assert ident.advice.startswith("non-official checkpoint: compatibility risk; use a verified")
    out = CliRunner().invoke(main, ["identify", str(root / "sonic/unet.pth")])
    assert out.exit_code == 1 and "non-official checkpoint" in out.stdout


def test_identify_names_a_pointer_by_oid_and_size(tmp_path: Path) -> None:
    root = pointer_tree(tmp_path, {"unet": "unet.pth"})
    oid, size = PUBLISHED["unet"]
    wrong = _write(tmp_path / "sonic/unet.pth", format_pointer(oid, size - 1))
    out = CliRunner().invoke(main, ["identify", str(root / "unet.pth"), str(wrong), "--json"])
    a, b = json.loads(out.stdout)["files"]
    assert a["status"] == "not-downloaded" and a["lfs_pointer"] == {"oid": oid, "size": size}
    assert "pointer to the published unet.pth" in a["advice"]
    # Same oid, another size: not the published file.
    assert b["status"] == "not-downloaded" and b["release"] is None
    assert "no known release" in b["advice"]


def test_hf_cache_snapshot_links_followed_only_inside_the_cache(tmp_path: Path) -> None:
    repo = tmp_path / "hub/models--LeonJoe13--Sonic"
    data = _junk("audio2token")
    blob = _write(repo / "blobs" / hashlib.sha256(data).hexdigest(), data)
    snap = repo / "snapshots/0123abc/Sonic"
    snap.mkdir(parents=True)
    (snap / "audio2token.pth").symlink_to(os.path.relpath(blob, snap))
    outside = _write(tmp_path / "secret/unet.pth", _junk("outside"))
    (snap / "unet.pth").symlink_to(os.path.relpath(outside, snap))
    cat = local_catalog({"audio_encoder": blob})
    report = diagnose(repo, KnownReleases(None, cat))
    rows = {r.rel: r.to_dict() for r in report.rows}
    token = rows["snapshots/0123abc/Sonic/audio2token.pth"]
    assert (token["status"], token["role"]) == ("published", "audio_encoder")
    link = rows["snapshots/0123abc/Sonic/unet.pth"]
    assert link["status"] == "outside" and "not followed" in link["advice"]
    assert link["sha256"] is None and link["problem"]  # never read
    # Run on the snapshot folder itself, the links still may reach the repo's blobs/.
    rows = {r.rel: r.to_dict() for r in diagnose(snap, KnownReleases(None, cat)).rows}
    assert rows["audio2token.pth"]["status"] == "published"
    assert rows["unet.pth"]["status"] == "outside"
    # A plain models folder: a link out of it is not followed either.
    plain = tmp_path / "models/sonic"
    plain.mkdir(parents=True)
    (plain / "audio2token.pth").symlink_to(blob)
    rows = {r.rel: r.to_dict() for r in diagnose(plain.parent, KnownReleases(None, cat)).rows}
    assert rows["sonic/audio2token.pth"]["status"] == "outside"
    # identify follows a snapshot link into its cache's blobs/ and no further.
    (ident,) = identify_files([snap / "audio2token.pth"], KnownReleases(None, cat))
    assert ident.status == "published" and ident.path == str(snap / "audio2token.pth")
    out = CliRunner().invoke(main, ["identify", str(snap / "unet.pth")])
    assert out.exit_code == 2 and "not followed" in out.stderr


def test_one_link_rule_for_identify_and_doctor(tmp_path: Path) -> None:
    """doctor.link_target: a snapshot link may reach its own cache repo's blobs/, never
    another repo's, and a dangling link is never followed; identify asks the same."""
    repo = tmp_path / "hub/models--LeonJoe13--Sonic"
    blob = _write(repo / "blobs" / "a", _junk("a"))
    other = _write(tmp_path / "hub/models--someone--else/blobs/b", _junk("b"))
    snap = repo / "snapshots/0123abc"
    snap.mkdir(parents=True)
    for name, target in (("own", blob), ("other", other), ("gone", repo / "blobs/gone")):
        (snap / name).symlink_to(os.path.relpath(target, snap))
    assert link_target(snap / "own", snap) == blob.resolve()
    assert link_target(snap / "other", snap) is None
    assert link_target(snap / "gone", snap) is None
    assert link_target(snap / "own", tmp_path / "elsewhere") is None
    found = identify_files([snap / "own"], KnownReleases(None, parse_catalog([])))
    assert found[0].sha256 == hashlib.sha256(_junk("a")).hexdigest()
    out = CliRunner().invoke(main, ["identify", str(snap / "other")])
    assert out.exit_code == 2 and "outside its folder: not followed" in out.stderr


# --- resolve: a verdict, never an internal error ----------------------------------------------


def _random_sonic_tree(root: Path) -> Path:
    for rel in (*FLAT.values(), "checkpoints/svd_xt_1_1.safetensors"):
        _write(root / rel, _junk(rel))
    return root


@pytest.mark.parametrize("workflow", CORRECT)
def test_resolve_unknown_files_exit_1_and_unverified_with_allow(
    tmp_path: Path, workflow: str
) -> None:
    root = _random_sonic_tree(tmp_path / "models")
    runner = CliRunner()
    args = ["resolve", str(WORKFLOWS / workflow), "--models-dir", str(root)]
    out = runner.invoke(main, args)
    assert out.exit_code == 1, out.output
    for rel in ("sonic/unet.pth", "sonic/audio2token.pth", "checkpoints/svd_xt_1_1.safetensors"):
        sha = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        assert any(rel in line and sha in line for line in out.stderr.splitlines()), out.stderr
    assert "internal error" not in out.output
    assert "non-official checkpoint: compatibility risk" in out.stderr
    out = runner.invoke(main, [*args, "--allow-unsigned"])
    assert out.exit_code == 0, out.output
    assert "UNVERIFIED" in out.stdout and "internal error" not in out.output


def test_resolve_pointer_tree_says_not_downloaded_even_with_allow(tmp_path: Path) -> None:
    root = pointer_tree(tmp_path / "models", FLAT)
    _write(root / "checkpoints/svd_xt_1_1.safetensors", _junk("svd"))
    args = ["resolve", str(WORKFLOWS / CORRECT[0]), "--models-dir", str(root), "--allow-unsigned"]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 1, out.output
    assert (
        "sonic/unet.pth: not downloaded: a Git LFS pointer to the published unet.pth" in out.stderr
    )


def test_resolve_published_files_resolve_to_the_published_release(tmp_path: Path) -> None:
    root = _random_sonic_tree(tmp_path / "models")
    files = {role: root / rel for role, rel in FLAT.items()}
    files["svd"] = root / "checkpoints/svd_xt_1_1.safetensors"
    known = KnownReleases(None, local_catalog(files))
    res = analyze_graph(load_graph(WORKFLOWS / CORRECT[0]), known, root)
    assert res.channel == "published" and res.release is not None
    assert res.release.release.version == "2025.1.14" and res.release.signers == ()
    # The author's own example asks for min_resolution=256: the published ranges refuse it.
    assert [str(p).split(": ", 1)[1] for p in res.problems] == [
        "min_resolution=256 is below the allowed 512..2048: below 768 fine facial detail "
        "is softened (below 512 it is lost)"
    ]
    graph = load_graph(WORKFLOWS / CORRECT[1])  # 20250216.json: min_resolution 512
    assert analyze_graph(graph, known, root).ok
    # A swapped audio2token (a fixed-path file, no widget) changes the verdict.
    _write(root / "sonic/audio2token.pth", _junk("swapped"))
    res = analyze_graph(graph, known, root)
    assert not res.ok and "sonic/audio2token.pth" in str(res.problems[0])


def test_no_builtin_catalog_needs_a_registry(tmp_path: Path) -> None:
    f = pointer_tree(tmp_path, {"unet": "unet.pth"}) / "unet.pth"
    out = CliRunner().invoke(main, ["identify", str(f), "--no-builtin-catalog"])
    assert out.exit_code == 2 and "give --registry" in out.stderr


# --- what a file says about itself ------------------------------------------------------


def test_dice_talk_look_alike_unet_says_why_without_unpickling(tmp_path: Path) -> None:
    import torch

    unet = tmp_path / "models/sonic/unet.pth"
    unet.parent.mkdir(parents=True)
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_ip.{}.weight"
    # A DICE-Talk UNet: audio *and* emotion IP adapters (two key sets).
    torch.save({key.format(0): torch.zeros(2), key.format(1): torch.zeros(2)}, unet)
    calls: list[object] = []
    import pickle

    real_load = pickle.load
    pickle.load = lambda *a, **k: calls.append(a) or real_load(*a, **k)  # type: ignore[assignment]
    try:
        (ident,) = identify_files([unet], KnownReleases.builtin())
    finally:
        pickle.load = real_load  # type: ignore[assignment]
    assert calls == []
    assert ident.status == "unknown" and ident.format == "torch-zip"
    assert ident.advice == (
        "non-official checkpoint: compatibility risk; use a verified release: it has a second "
        "audio IP-adapter key set (to_k_ip.1): it looks like a ComfyUI_DICE_Talk UNet, which "
        "Sonic's strict load refuses (ComfyUI_Sonic #109)"
    )
    # A Sonic-shaped UNet (one key set) gets the warning without that reason.
    torch.save({key.format(0): torch.ones(2)}, unet)
    (ident,) = identify_files([unet], KnownReleases.builtin())
    assert ident.advice == "non-official checkpoint: compatibility risk; use a verified release"


def test_converted_published_pickle_says_what_it_claims(tmp_path: Path) -> None:
    import torch

    from sonic_registry.convert import convert_checkpoint

    src = tmp_path / "models/sonic/audio2token.pth"
    src.parent.mkdir(parents=True)
    torch.save({"proj.weight": torch.ones(4)}, src)
    from sonic_registry.digest import hash_file

    out = convert_checkpoint(
        src,
        tmp_path / "models/sonic/audio2token.safetensors",
        source_sha256=hash_file(src).sha256,
    ).output
    known = KnownReleases(None, local_catalog({"audio_encoder": src}))
    (ident,) = identify_files([out], known)
    assert ident.status == "converted" and ident.to_dict()["problem"]
    assert "made by `sonic-registry convert` from the published audio2token.pth" in ident.advice
    assert "sign the converted bundle with your own key" in ident.advice


@pytest.mark.parametrize(
    "workflow", sorted(str(p.relative_to(WORKFLOWS)) for p in WORKFLOWS.rglob("*.json"))
)
def test_every_real_workflow_gets_a_clear_verdict(tmp_path: Path, workflow: str) -> None:
    """Old interfaces, broken API prompts, wrong families: a verdict, never an internal error."""
    root = _random_sonic_tree(tmp_path / "models")
    for allow in ([], ["--allow-unsigned"]):
        out = CliRunner().invoke(
            main, ["resolve", str(WORKFLOWS / workflow), "--models-dir", str(root), *allow]
        )
        assert out.exit_code in (0, 1, 2), out.output
        assert "internal error" not in out.output, out.output
        assert out.exception is None or isinstance(out.exception, SystemExit), out.output
        assert out.output.strip(), "a verdict says something"


@pytest.mark.parametrize("bad", ["AB" * 32, "ab" * 32 + "\n", "ab" * 31, 5, ["ab" * 32]])
def test_catalog_refuses_a_digest_that_is_not_64_lowercase_hex(bad: object) -> None:
    """One check (hexdigest.is_sha256_hex): a number or a list is refused in the same
    words as a short digest, not an internal error."""
    doc = json.loads(
        resources.files("sonic_registry.catalog").joinpath("sonic-2025.1.14.json").read_bytes()
    )
    doc["components"]["unet"]["sha256"] = bad
    with pytest.raises(ValueError, match="unet: sha256 is not 64 lower-case hex"):
        parse_catalog([json.dumps(doc).encode()])


def test_one_definition_of_a_sha256_written_as_text() -> None:
    """The 64-hex pattern is defined once (sonic_registry/hexdigest.py), not per module."""
    package = Path(sonic_registry.__file__).parent
    defining = sorted(
        p.relative_to(package).as_posix()
        for p in package.rglob("*.py")
        if re.search(r"re\.compile\(r?\"\[0-9a-f(A-F)?\]\{64\}\"\)", p.read_text("utf-8"))
    )
    assert defining == ["hexdigest.py"]
