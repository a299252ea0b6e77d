"""Model files outside ComfyUI's ``models/`` (``extra_model_paths.yaml``).

ComfyUI looks a loader's file name up in every folder registered under its
folder name, first folder holding the file wins (``folder_paths.get_full_path``);
ComfyUI_Sonic's helper files come from the fixed ``models/sonic/``. The pack must
check the very file ComfyUI loads, and confine it to the folder it was found in.
Real signed releases and files, the guard, and the glue on the stand-in server.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import pytest
import test_comfyui_pack
from click.testing import CliRunner
from test_comfyui_pack import World

from sonic_registry.cli import main
from sonic_registry.comfyui_pack import glue
from sonic_registry.comfyui_pack.check import render_text
from sonic_registry.comfyui_pack.guard import guard_prompt
from sonic_registry.errors import UnreadableInputError, UnsafePathError
from sonic_registry.model_folders import ModelFolders
from sonic_registry.resolver import analyze_graph
from sonic_registry.workflows.comfyui import parse_workflow

world = test_comfyui_pack.world  # the same releases, registry and stand-in folder
pack = test_comfyui_pack.pack  # the glue installed on that stand-in server


def _flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _folders(world: World, sonic: list[Path], checkpoints: list[Path]) -> ModelFolders:
    return ModelFolders.comfyui(
        world.models,
        {"sonic": [str(p) for p in sonic], "checkpoints": [str(p) for p in checkpoints]},
    )


def _move(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(src, dst)
    return dst


@pytest.fixture
def extra(world: World) -> Path:
    """The UNet and the SVD checkpoint moved out of ``models/`` into an extra folder."""
    shelf = world.tmp / "shelf"
    _move(world.models / "sonic" / "unet.pth", shelf / "sonic" / "unet.pth")
    _move(
        world.models / "checkpoints" / "svd_xt_1_1.safetensors",
        shelf / "ckpts" / "svd_xt_1_1.safetensors",
    )
    return shelf


def test_a_file_only_in_an_extra_folder_is_found_and_checked(world: World, extra: Path) -> None:
    models = world.models
    # Today's single models folder: the moved files are missing, and the message says where.
    verdict = guard_prompt(world.api, world.context())
    assert {f.kind for f in verdict.refused} == {"missing"}
    # With ComfyUI's folders (ComfyUI_Sonic appends models/sonic after the yaml's folder).
    ctx = world.context()
    ctx.models = _folders(
        world, [extra / "sonic", models / "sonic"], [models / "checkpoints", extra / "ckpts"]
    )
    verdict = guard_prompt(world.api, ctx)
    assert verdict.ok and verdict.findings == (), [f.message for f in verdict.findings]
    assert dict(verdict.statuses) == {"14": "official", "16": "official", "17": "official"}
    res = verdict.resolution
    assert res is not None and res.release is not None
    assert res.release.release.release_id == "sonic@1.3.0#1"
    assert res.located["sonic/unet.pth"] == extra / "sonic" / "unet.pth"
    assert res.located["checkpoints/svd_xt_1_1.safetensors"] == (
        extra / "ckpts" / "svd_xt_1_1.safetensors"
    )
    assert res.located["sonic/audio2token.pth"] == models / "sonic" / "audio2token.pth"
    # The file in the extra folder is the one judged: one flipped byte is tampering.
    _flip_byte(extra / "sonic" / "unet.pth")
    verdict = guard_prompt(world.api, ctx)
    assert [(f.kind, f.nodes) for f in verdict.refused] == [("tampered", ("14",))]


def test_the_same_name_in_two_folders_is_the_one_comfyui_loads(world: World) -> None:
    """First folder in ComfyUI's order wins: the other file is never read."""
    models = world.models
    shelf = world.tmp / "shelf" / "sonic"
    shelf.mkdir(parents=True)
    shutil.copyfile(world.v12 / "unet.pth", shelf / "unet.pth")  # a 1.2.0 UNet under the name
    ctx = world.context()
    # Extra folder first (the yaml loads before ComfyUI_Sonic adds models/sonic): 1.2.0 is
    # loaded beside 1.3.0 helpers -> mixed.
    ctx.models = _folders(world, [shelf, models / "sonic"], [models / "checkpoints"])
    verdict = guard_prompt(world.api, ctx)
    assert {f.kind for f in verdict.refused} == {"mixed"}
    assert verdict.resolution is not None
    assert verdict.resolution.located["sonic/unet.pth"] == shelf / "unet.pth"
    # models/sonic first (is_default: false on a folder listed later): the 1.3.0 file.
    ctx.models = _folders(world, [models / "sonic", shelf], [models / "checkpoints"])
    verdict = guard_prompt(world.api, ctx)
    assert verdict.ok and verdict.findings == ()
    # A dangling link where the first folder has the name: ComfyUI skips it, so do we.
    (shelf / "unet.pth").unlink()
    (shelf / "unet.pth").symlink_to(shelf / "gone.pth")
    ctx.models = _folders(world, [shelf, models / "sonic"], [models / "checkpoints"])
    verdict = guard_prompt(world.api, ctx)
    assert verdict.ok and verdict.findings == ()
    assert verdict.resolution is not None
    assert verdict.resolution.located["sonic/unet.pth"] == models / "sonic" / "unet.pth"


def test_fixed_path_files_are_not_searched_in_extra_folders(world: World) -> None:
    """ComfyUI_Sonic loads audio2token.pth from models/sonic/ only; the message says so."""
    models = world.models
    shelf = world.tmp / "shelf" / "sonic"
    _move(models / "sonic" / "audio2token.pth", shelf / "audio2token.pth")
    graph = parse_workflow(world.api, source="prompt")
    folders = _folders(world, [shelf, models / "sonic"], [models / "checkpoints"])
    res = analyze_graph(graph, world.context().releases, folders, allow_unsigned=True)
    (problem,) = res.problems
    assert isinstance(problem, UnreadableInputError)
    assert problem.where == str(models / "sonic" / "audio2token.pth")
    assert problem.detail == (
        "no such file (loaded by node 17 (SONIC_PreData) (implicit)); the node loads it from "
        f"this path only, not from ComfyUI's other 'sonic' folders ('{shelf}', "
        f"'{models / 'sonic'}')"
    )


def test_a_missing_file_names_every_folder_searched(world: World) -> None:
    models = world.models
    shelf = world.tmp / "shelf" / "sonic"
    shelf.mkdir(parents=True)
    (models / "sonic" / "unet.pth").unlink()
    ctx = world.context()
    ctx.models = _folders(world, [shelf, models / "sonic"], [models / "checkpoints"])
    verdict = guard_prompt(world.api, ctx)
    (missing,) = verdict.refused
    assert (missing.kind, missing.nodes) == ("missing", ("14",))
    assert missing.message[0] == (
        f"sonic/unet.pth: no such file in '{shelf}', '{models / 'sonic'}' (ComfyUI's 'sonic' "
        "folders, searched in this order; loaded by node 14 (SONICTLoader) sonic_unet)"
    )


def test_dotdot_and_links_out_of_the_extra_folder_are_refused(world: World) -> None:
    models = world.models
    shelf = world.tmp / "shelf" / "sonic"
    shelf.mkdir(parents=True)
    secret = world.tmp / "secret.pth"
    shutil.copyfile(models / "sonic" / "unet.pth", secret)  # good bytes, outside every folder
    ctx = world.context()
    ctx.models = _folders(world, [shelf, models / "sonic"], [models / "checkpoints"])
    # A name climbing out: refused before any folder is looked at.
    climbing = json.loads(json.dumps(world.api))
    climbing["14"]["inputs"]["sonic_unet"] = "../../secret.pth"
    verdict = guard_prompt(climbing, ctx)
    assert [f.kind for f in verdict.refused] == ["unsafe"]
    assert (
        "expected a file inside the models directory, found 'sonic/../../secret.pth'"
        in (verdict.refused[0].message[0])
    )
    # A link in the extra folder leading out of it: refused, never read.
    (shelf / "unet.pth").symlink_to(secret)
    verdict = guard_prompt(world.api, ctx)
    (unsafe,) = verdict.refused
    assert (unsafe.kind, unsafe.nodes) == ("unsafe", ("14",))
    assert unsafe.message[0] == (
        f"prompt: node 14 (SONICTLoader) sonic_unet sonic/unet.pth: {shelf / 'unet.pth'}: "
        f"expected a file inside {shelf}, found a link to {secret}"
    )
    # A link that stays inside its folder is followed, as ComfyUI follows it.
    (shelf / "unet.pth").unlink()
    shutil.copyfile(secret, shelf / "real-unet.pth")
    (shelf / "unet.pth").symlink_to("real-unet.pth")
    verdict = guard_prompt(world.api, ctx)
    assert verdict.ok and verdict.findings == (), [f.message[0] for f in verdict.findings]


def test_a_models_subfolder_linked_to_another_disk_is_followed(world: World) -> None:
    """``models/sonic`` as a link to another disk (a common setup): the guard and the CLI's
    single models folder accept every file in it, fixed-path helpers included; a file link
    inside it that leads elsewhere is still refused."""
    models = world.models
    disk = world.tmp / "disk"
    disk.mkdir()
    shutil.move(models / "sonic", disk / "sonic")
    (models / "sonic").symlink_to(disk / "sonic", target_is_directory=True)
    ctx = world.context()
    ctx.models = _folders(world, [models / "sonic"], [models / "checkpoints"])
    verdict = guard_prompt(world.api, ctx)
    assert verdict.ok and verdict.findings == (), [f.message[0] for f in verdict.findings]
    graph = parse_workflow(world.api, source="prompt")
    res = analyze_graph(graph, ctx.releases, models, allow_unsigned=True)  # as --models-dir
    assert res.problems == () and res.release is not None
    secret = world.tmp / "secret.pth"
    shutil.move(disk / "sonic" / "audio2token.pth", secret)
    (disk / "sonic" / "audio2token.pth").symlink_to(secret)
    res = analyze_graph(graph, ctx.releases, models, allow_unsigned=True)
    (problem,) = res.problems
    assert isinstance(problem, UnsafePathError) and f"found a link to {secret}" in str(problem)
    assert [f.kind for f in guard_prompt(world.api, ctx).refused] == ["unsafe"]


def test_a_link_between_folders_of_models_is_judged_alike(world: World) -> None:
    """``checkpoints/x`` linking into another folder of ``models/``: the guard (which searches
    ``models/checkpoints``) and ``resolve --models-dir`` agree, and follow it."""
    models = world.models
    name = "svd_xt_1_1.safetensors"
    stored = _move(models / "checkpoints" / name, models / "store" / name)
    (models / "checkpoints" / name).symlink_to(Path("..") / "store" / name)
    ctx = world.context()
    ctx.models = _folders(world, [models / "sonic"], [models / "checkpoints"])
    verdict = guard_prompt(world.api, ctx)
    assert verdict.ok and verdict.findings == (), [f.message[0] for f in verdict.findings]
    graph = parse_workflow(world.api, source="prompt")
    res = analyze_graph(graph, ctx.releases, models, allow_unsigned=True)
    assert res.problems == ()
    assert stored.is_file()


def test_locate_and_extra_dirs(tmp_path: Path) -> None:
    models = tmp_path / "ComfyUI" / "models"
    (models / "sonic").mkdir(parents=True)
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    (shelf / "unet.pth").write_bytes(b"x")
    folders = ModelFolders.comfyui(
        models, {"sonic": [str(shelf), str(models / "sonic")], "vae": [str(tmp_path / "none")]}
    )
    assert folders.locate("sonic", "sonic/unet.pth") == shelf / "unet.pth"
    assert folders.locate("", "sonic/unet.pth") is None  # a fixed path: models/sonic only
    assert folders.locate("loras", "loras/unet.pth") is None  # a folder ComfyUI lacks
    assert folders.extra_dirs() == (shelf,)  # models/sonic is walked already; none is absent
    (shelf / "out.pth").symlink_to(tmp_path / "ComfyUI")  # a link to a directory: not a file
    assert folders.locate("sonic", "sonic/out.pth") is None
    (tmp_path / "elsewhere.pth").write_bytes(b"y")
    (shelf / "esc.pth").symlink_to(tmp_path / "elsewhere.pth")
    with pytest.raises(UnsafePathError, match="expected a file inside"):
        folders.locate("sonic", "sonic/esc.pth")


def test_resolve_models_dir_is_one_folder(world: World, tmp_path: Path) -> None:
    """The CLI's --models-dir: no folder search; a link out of the folder is refused."""
    models = world.models
    moved = _move(models / "sonic" / "unet.pth", tmp_path / "outside" / "unet.pth")
    (models / "sonic" / "unet.pth").symlink_to(moved)
    workflow = tmp_path / "prompt.json"
    workflow.write_text(json.dumps(world.api))
    out = CliRunner().invoke(main, ["resolve", str(workflow), "--models-dir", str(models)])
    assert out.exit_code == 1, out.output
    assert f"expected a file inside {models}, found a link to {moved}" in out.stderr


# --- the glue on the stand-in server: ComfyUI's folder table, the check, the badges -------


def test_the_pack_searches_comfyuis_folder_table(
    world: World, extra: Path, pack: glue.Pack, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sonic_registry.digest import StatCache

    table = world.standin.folder_paths.folder_names_and_paths  # type: ignore[attr-defined]
    status, body = world.standin.post(world.api)
    assert status == 400  # the files are outside every folder ComfyUI knows
    assert {e["type"] for n in body["node_errors"].values() for e in n["errors"]} == {
        "sonic_registry_missing"
    }
    # What extra_model_paths.yaml does: more folders in ComfyUI's table, read on each use.
    table["sonic"][0].insert(0, str(extra / "sonic"))
    table["checkpoints"][0].append(str(extra / "ckpts"))
    status, body = world.standin.post(world.api)
    assert status == 200 and body["node_errors"] == {}, body
    # The one-click check lists the extra folders' files too, by full path.
    monkeypatch.setattr(StatCache, "RACY_SECONDS", 0.0)
    (extra / "sonic" / "my_finetune.pth").write_bytes(b"z" * 2048)
    status, report = asyncio.run(world.standin.server.get("/sonic_registry/check"))
    assert status == 200
    rows = {r["path"]: r for r in report["files"]}
    assert rows[(extra / "sonic" / "unet.pth").as_posix()]["release_id"] == "sonic@1.3.0#1"
    assert rows[(extra / "ckpts" / "svd_xt_1_1.safetensors").as_posix()]["role"] == "svd"
    assert rows[(extra / "sonic" / "my_finetune.pth").as_posix()]["status"] == "unknown"
    assert rows["sonic/audio2token.pth"]["status"] == "official"
    assert report["extra_model_dirs"] == [str(extra / "ckpts"), str(extra / "sonic")]
    lines = render_text(report).splitlines()
    assert lines[1] == f"extra model folders: {extra / 'ckpts'}, {extra / 'sonic'}"
    assert (
        f"{(extra / 'sonic' / 'unet.pth').as_posix()}: official, sonic@1.3.0#1 unet -> ok" in lines
    )
    # The badges name files as the loaders do, the first folder's file winning.
    status, files = asyncio.run(world.standin.server.get("/sonic_registry/files"))
    assert files["files"]["sonic/unet.pth"]["release_id"] == "sonic@1.3.0#1"
    assert files["files"]["checkpoints/svd_xt_1_1.safetensors"]["role"] == "svd"
    assert files["files"]["sonic/my_finetune.pth"]["status"] == "unknown"
    shutil.copyfile(world.v12 / "unet.pth", world.models / "sonic" / "unet.pth")
    os.utime(world.models / "sonic" / "unet.pth", (1, 1))
    status, files = asyncio.run(world.standin.server.get("/sonic_registry/files"))
    assert files["files"]["sonic/unet.pth"]["release_id"] == "sonic@1.3.0#1"  # the shelf's
    # A fixed-path helper (ComfyUI_Sonic reads models/sonic/audio2token.pth only): its badge is
    # that file's, even when the first 'sonic' folder holds another file of the same name.
    shutil.copyfile(world.v12 / "audio2token.pth", extra / "sonic" / "audio2token.pth")
    os.utime(extra / "sonic" / "audio2token.pth", (1, 1))
    asyncio.run(world.standin.server.get("/sonic_registry/check"))  # hashes both into the cache
    status, files = asyncio.run(world.standin.server.get("/sonic_registry/files"))
    assert files["files"]["sonic/audio2token.pth"]["release_id"] == "sonic@1.3.0#1"


def test_the_folder_table_s_code_and_odd_entries_are_not_model_folders(
    world: World, pack: glue.Pack
) -> None:
    """Real ComfyUI lists ``custom_nodes`` (outside ``models/``) in its folder table, and
    a custom node may add an entry of the wrong shape: neither is walked or searched."""
    table = world.standin.folder_paths.folder_names_and_paths  # type: ignore[attr-defined]
    code = world.standin.base / "custom_nodes" / "SomeNode"
    code.mkdir(parents=True)
    shutil.copyfile(world.models / "sonic" / "unet.pth", code / "bundled.pth")
    table["custom_nodes"] = ([str(code.parent)], set())
    table["odd"] = (str(world.tmp / "shelf"), {".pth"})  # a bare string, not a list
    table["odder"] = "not a tuple"
    folders = pack.model_folders()
    assert folders.extra_dirs() == ()
    assert set(folders.searched) == {"checkpoints", "sonic"}
    status, report = asyncio.run(world.standin.server.get("/sonic_registry/check"))
    assert status == 200 and report["extra_model_dirs"] == []
    assert not [r["path"] for r in report["files"] if "bundled" in r["path"]], report["files"]
    assert world.standin.post(world.api)[0] == 200
