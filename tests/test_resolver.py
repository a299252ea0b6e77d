"""Resolver: real signed releases, a registry, a ComfyUI models folder, real workflows."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sonic_install import WORKFLOWS, dice_release, install, make_registry, sonic_release

from sonic_registry.errors import (
    IncompatibleRuntimeError,
    MixedReleaseError,
    UnreadableInputError,
    UnsignedReleaseError,
)
from sonic_registry.registry import Registry
from sonic_registry.resolver import analyze_graph, resolve_graph
from sonic_registry.workflows import InterfaceMismatchError, InvalidGraph, load_graph

EXAMPLE = WORKFLOWS / "smthemex-ComfyUI_Sonic" / "example.json"
COMPAT = """
[[compatible_with]]
model = "sonic"
versions = "==1.2.*"
roles = ["audio_encoder"]
"""


@dataclass
class World:
    tmp: Path
    registry: Registry
    trust_file: Path
    v12: Path
    v13: Path
    v131: Path  # 1.3.1 declares sonic 1.2.* audio_encoder compatible
    dice: Path  # a community "dice-talk" release whose unet.pth has Sonic's file name
    models: Path


@pytest.fixture
def world(
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    trust_file: Path,
    community_key: object,
) -> World:
    v12 = sonic_release(make_bundle, "v12", version="1.2.0", step=50000)
    v13 = sonic_release(make_bundle, "v13", version="1.3.0", step=80000)
    v131 = sonic_release(make_bundle, "v131", version="1.3.1", step=90000, extra=COMPAT)
    dice = dice_release(make_bundle, community_key, files={"unet": "unet.pth"})
    reg = make_registry(tmp_path / "reg", trust_file, [v12, v13, v131, dice])
    models = install(v13, tmp_path / "models")
    return World(tmp_path, reg, trust_file, v12, v13, v131, dice, models)


def _copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)


# --- one release: ok ------------------------------------------------------------


def test_current_workflow_resolves_to_one_official_release(world: World) -> None:
    res = resolve_graph(EXAMPLE, world.registry, world.models)
    assert res.release is not None
    assert res.release.release.release_id == "sonic@1.3.0#1"
    assert res.channel == "official" and res.label == "official"
    roles = {(c.node, c.role) for c in res.components}
    assert roles == {
        ("14", "unet"),
        ("17", "audio_encoder"),
        ("17", "motion_decoder"),
        ("16", "svd"),
    }
    assert dict(res.params) == {
        "seed": 443489271,
        "inference_steps": 25,
        "dynamic_scale": 1,
        "fps": 25,
        "duration": 3,
        "min_resolution": 256,
        "expand_ratio": 0.5,
    }
    assert res.unknown_nodes == ()


def test_same_file_loaded_by_many_nodes_is_hashed_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sonic_registry.digest as digest

    calls: list[Path] = []
    real = digest.hash_file

    def counting(path: Path, **kw: object) -> digest.FileDigest:
        calls.append(Path(path))
        return real(path)

    monkeypatch.setattr(digest, "hash_file", counting)
    doc = json.loads(EXAMPLE.read_text())
    loader = next(n for n in doc["nodes"] if n["type"] == "SONICTLoader")
    for i in range(20):  # 20 more loaders of the same unet, unconnected but valid
        doc["nodes"].append(
            {
                **loader,
                "id": 1000 + i,
                "inputs": [{**loader["inputs"][0], "link": None}],
                "outputs": [],
            }
        )
    path = world.tmp / "many.json"
    path.write_text(json.dumps(doc))
    analyze_graph(load_graph(path), world.registry, world.models)
    assert len(calls) == len(set(calls))


def test_files_are_hashed_in_one_parallel_batch_and_errors_stay_per_file(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sonic_registry.digest as digest
    from sonic_registry.digest import KnownDigests

    batches: list[list[Path]] = []
    real_files, real_file = digest.hash_files, digest.hash_file

    def batch(paths: list[Path], **kw: object) -> list[digest.FileDigest]:
        batches.append([Path(p) for p in paths])
        return real_files(paths)

    monkeypatch.setattr(digest, "hash_files", batch)
    res = analyze_graph(load_graph(EXAMPLE), world.registry, world.models)
    assert res.ok and len(batches) == 1 and len(batches[0]) == len(set(batches[0])) > 1

    # Files the caller vouches for are not read at all (and KnownDigests has no save()).
    batches.clear()
    known = KnownDigests({p: real_file(p) for p in world.models.rglob("*") if p.is_file()})
    res = analyze_graph(load_graph(EXAMPLE), world.registry, world.models, stat_cache=known)
    assert res.ok and batches == []

    # One unreadable file: its own error, the others still identified.
    def broken(path: Path, **kw: object) -> digest.FileDigest:
        if Path(path).name == "audio2bucket.pth":
            raise UnreadableInputError(str(path), "cannot read: Input/output error")
        return real_file(path)

    monkeypatch.setattr(digest, "hash_files", real_files)
    monkeypatch.setattr(digest, "hash_file", broken)
    res = analyze_graph(load_graph(EXAMPLE), world.registry, world.models)
    assert [str(p) for p in res.problems] == [
        f"{world.models / 'sonic/audio2bucket.pth'}: cannot read: Input/output error"
    ]


# --- mixed releases -------------------------------------------------------------------


def test_mixed_training_steps_are_refused_naming_each_component(world: World) -> None:
    _copy(world.v12 / "audio2token.pth", world.models / "sonic/audio2token.pth")
    with pytest.raises(MixedReleaseError) as err:
        resolve_graph(EXAMPLE, world.registry, world.models)
    text = str(err.value)
    assert "audio_encoder is sonic 1.2.0 step 50000" in text
    assert "unet is sonic 1.3.0 step 80000" in text
    assert "motion_decoder is sonic 1.3.0 step 80000" in text
    assert "node 17 SONIC_PreData, sonic/audio2token.pth" in text
    assert "releases must not be mixed" in text


def test_newer_release_declaring_the_older_compatible_may_mix(world: World) -> None:
    install(world.v131, world.models)
    _copy(world.v12 / "audio2token.pth", world.models / "sonic/audio2token.pth")
    res = resolve_graph(EXAMPLE, world.registry, world.models)
    assert res.release is not None and res.release.release.version == "1.3.1"
    enc = next(c for c in res.components if c.role == "audio_encoder")
    assert (enc.version, enc.training_step) == ("1.2.0", 50000)


def test_compatibility_is_limited_to_the_declared_roles(world: World) -> None:
    install(world.v131, world.models)
    _copy(world.v12 / "audio2bucket.pth", world.models / "sonic/audio2bucket.pth")
    with pytest.raises(MixedReleaseError, match=r"motion_decoder is sonic 1\.2\.0 step 50000"):
        resolve_graph(EXAMPLE, world.registry, world.models)


def test_dice_talk_unet_under_sonic_file_name_is_caught_by_digest(world: World) -> None:
    _copy(world.dice / "unet.pth", world.models / "sonic/unet.pth")
    with pytest.raises(MixedReleaseError) as err:
        resolve_graph(EXAMPLE, world.registry, world.models)
    assert "unet is dice-talk 1.0.0 step 10000 (node 14 SONICTLoader, sonic/unet.pth)" in str(
        err.value
    )


def test_unknown_file_is_refused_unless_unsigned_is_allowed(world: World) -> None:
    (world.models / "sonic/unet.pth").write_bytes(b"not a signed unet" * 100)
    with pytest.raises(UnsignedReleaseError, match="unknown to the registry"):
        resolve_graph(EXAMPLE, world.registry, world.models)
    res = resolve_graph(EXAMPLE, world.registry, world.models, allow_unsigned=True)
    assert res.channel == "unverified" and res.label == "unverified"
    assert any("accepted as unverified" in w for w in res.warnings)


def test_component_in_the_wrong_slot_is_an_interface_mismatch(world: World) -> None:
    _copy(world.v13 / "audio2token.pth", world.models / "sonic/unet.pth")
    with pytest.raises(InterfaceMismatchError, match="expected the unet component"):
        resolve_graph(EXAMPLE, world.registry, world.models)


def test_missing_file_is_unreadable_input(world: World) -> None:
    (world.models / "sonic/audio2bucket.pth").unlink()
    with pytest.raises(UnreadableInputError, match=r"audio2bucket\.pth: no such file"):
        resolve_graph(EXAMPLE, world.registry, world.models)


# --- runtime ---------------------------------------------------------------------------


def test_old_runtime_refuses_newer_release_saying_what_it_needs(world: World) -> None:
    with pytest.raises(IncompatibleRuntimeError) as err:
        resolve_graph(EXAMPLE, world.registry, world.models, runtime_version="1.2.0")
    assert "reference_runtime 1.2.0 cannot load sonic@1.3.0#1" in str(err.value)
    assert "needs reference_runtime <1.4,>=1.3" in str(err.value)
    res = resolve_graph(EXAMPLE, world.registry, world.models, runtime_version="1.3.2")
    assert res.ok


# --- every shared real workflow gives its verdict ---------------------------------------


def _sdxl_files(models: Path) -> None:
    from helpers import weight_bytes, write_safetensors

    for rel in (
        "checkpoints/sd_xl_base_1.0.safetensors",
        "clip_vision/clip_vision_g.safetensors",
        "vae/sdxl_vae.safetensors",
    ):
        write_safetensors(models / rel, {"w": weight_bytes(rel)})


VERDICTS = [
    ("smthemex-ComfyUI_Sonic/example.json", None, "comfyui-ui"),
    ("smthemex-ComfyUI_Sonic/20250216.json", None, "comfyui-ui"),
    ("frankpeng1218-Comfyui_AI_from_0_2025course/sonic.json", None, "comfyui-ui"),
    ("smthemex-ComfyUI_Sonic/20250211.json", "frame_num=100 frames", "comfyui-ui"),
    ("smthemex-ComfyUI_Sonic/example_with_uncrop.json", "svd_repo path widget", "comfyui-ui"),
    (
        "Peleke-comfyui-mcp/fda4c6c/lipsync-sonic.json",
        "'weight_dtype' is not connected",
        "comfyui-api",
    ),
    ("Peleke-comfyui-mcp/19fceae/lipsync-sonic.json", "wrong model family", "comfyui-api"),
]


@pytest.mark.parametrize(("rel", "refusal", "fmt"), VERDICTS, ids=[v[0] for v in VERDICTS])
def test_shared_workflow_verdict(world: World, rel: str, refusal: str | None, fmt: str) -> None:
    _sdxl_files(world.models)
    graph = load_graph(WORKFLOWS / rel)
    assert graph.format == fmt
    res = analyze_graph(graph, world.registry, world.models)
    if refusal is None:
        assert res.ok, [str(p) for p in res.problems]
        assert res.release is not None
        assert res.release.release.release_id == "sonic@1.3.0#1"
        assert {"seed", "inference_steps", "dynamic_scale", "fps", "duration"} <= set(res.params)
    else:
        assert not res.ok
        assert any(
            isinstance(p, InterfaceMismatchError) and refusal in str(p) for p in res.problems
        ), [str(p) for p in res.problems]


def test_old_frame_num_workflow_does_not_report_it_as_duration(world: World) -> None:
    graph = load_graph(WORKFLOWS / "smthemex-ComfyUI_Sonic/20250211.json")
    assert "duration" not in graph.params
    assert graph.params["inference_steps"] == 25


def test_broken_api_prompt_reports_its_params_and_stray_input(world: World) -> None:
    res = analyze_graph(
        load_graph(WORKFLOWS / "Peleke-comfyui-mcp/fda4c6c/lipsync-sonic.json"),
        world.registry,
        world.models,
    )
    assert res.params["duration"] == 99999
    assert any("'randomize' is not an input" in w for w in res.warnings)
    # The svd file is loaded from checkpoints/video/ and still identified by digest.
    svd = next(c for c in res.components if c.node == "1")
    assert svd.role == "svd" and svd.file == "checkpoints/video/svd_xt_1_1.safetensors"


def test_wrong_family_files_are_unknown_too(world: World) -> None:
    _sdxl_files(world.models)
    res = analyze_graph(
        load_graph(WORKFLOWS / "Peleke-comfyui-mcp/19fceae/lipsync-sonic.json"),
        world.registry,
        world.models,
    )
    unknown = [str(p) for p in res.problems if isinstance(p, UnsignedReleaseError)]
    assert any("sd_xl_base_1.0.safetensors" in line for line in unknown)


def test_unrelated_subgraph_is_reported_not_checked(world: World, good_workflow: Path) -> None:
    res = resolve_graph(good_workflow, world.registry, world.models)
    assert any("v1-5-pruned-emaonly.ckpt" in w and "outside" in w for w in res.warnings)


def test_unknown_node_types_are_reported(world: World) -> None:
    res = analyze_graph(
        load_graph(WORKFLOWS / "smthemex-ComfyUI_Sonic/example_with_uncrop.json"),
        world.registry,
        world.models,
    )
    assert "node 266 (Uncrop (mtb))" in res.unknown_nodes


# --- pipeline.toml ---------------------------------------------------------------------


def _pipeline(tmp: Path, body: str) -> Path:
    p = tmp / "pipeline.toml"
    p.write_text(body)
    return p


def test_pipeline_toml_by_file_and_by_component(world: World) -> None:
    p = _pipeline(
        world.tmp,
        """
[params]
inference_steps = 25
[nodes.enc]
file = "sonic/audio2token.pth"
role = "audio_encoder"
[nodes.dec]
component = { model = "sonic", version = "1.3.0", role = "motion_decoder" }
[nodes.sampler]
type = "sampler"
[[edges]]
from = "enc.tokens"
to = "dec.tokens"
interface = "sonic/v2"
[[edges]]
from = "dec"
to = "sampler"
""",
    )
    res = resolve_graph(p, world.registry, world.models)
    assert res.release is not None and res.release.release.version == "1.3.0"
    assert dict(res.params) == {"inference_steps": 25}


def test_pipeline_toml_edge_interface_mismatch(world: World) -> None:
    p = _pipeline(
        world.tmp,
        """
[nodes.enc]
file = "sonic/audio2token.pth"
[[edges]]
from = "enc"
to = "enc2"
[nodes.enc2]
file = "sonic/audio2bucket.pth"
interface = "audio_tokens/v3"
""",
    )
    with pytest.raises(InterfaceMismatchError, match="needs interface 'audio_tokens/v3'"):
        resolve_graph(p, world.registry, world.models)


def test_community_pipeline_is_labelled_non_official(world: World) -> None:
    _copy(world.dice / "unet.pth", world.models / "dice/unet.pth")
    p = _pipeline(world.tmp, '[nodes.unet]\nfile = "dice/unet.pth"\nrole = "unet"\n')
    res = resolve_graph(p, world.registry, world.models)
    assert (res.channel, res.label) == ("community", "non-official")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '[nodes.a]\n[nodes.b]\n[[edges]]\nfrom = "a"\nto = "b"\n'
            '[[edges]]\nfrom = "b"\nto = "a"\n',
            "cycle between nodes",
        ),
        ('[nodes.a]\n[[edges]]\nfrom = "a"\nto = "ghost"\n', "target node ghost does not exist"),
        ("[nodes.a]\nfile = 3\n", "expected a string"),
        ("[nodes]\n", "expected at least one"),
        ("nodes = [", "not valid TOML"),
    ],
)
def test_pipeline_structure_errors(world: World, body: str, message: str) -> None:
    with pytest.raises(InvalidGraph, match=message):
        load_graph(_pipeline(world.tmp, body))


# --- the command line -------------------------------------------------------------------


@dataclass
class _Out:
    returncode: int
    stdout: str
    stderr: str


def _cli(*args: str) -> _Out:
    from click.testing import CliRunner

    from sonic_registry.cli import main

    result = CliRunner().invoke(main, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return _Out(result.exit_code, result.stdout, result.stderr)


def test_cli_resolve_refuses_mixed_graph(world: World) -> None:
    _copy(world.v12 / "audio2token.pth", world.models / "sonic/audio2token.pth")
    args = [
        "resolve",
        str(EXAMPLE),
        "--registry",
        str(world.tmp / "reg"),
        "--trust",
        str(world.trust_file),
        "--models-dir",
        str(world.models),
    ]
    out = _cli(*args)
    assert out.returncode == 1, out.stderr
    assert out.stderr.count("\n") == 1 and "error: " in out.stderr
    assert "audio_encoder is sonic 1.2.0 step 50000" in out.stderr
    data = json.loads(_cli(*args, "--json").stdout)
    assert data["ok"] is False and data["errors"][0]["error"] == "MixedReleaseError"
    assert data["params"]["inference_steps"] == 25


def test_cli_resolve_ok_and_json(world: World) -> None:
    args = [
        "resolve",
        str(EXAMPLE),
        "--registry",
        str(world.tmp / "reg"),
        "--trust",
        str(world.trust_file),
        "--models-dir",
        str(world.models),
    ]
    out = _cli(*args)
    assert out.returncode == 0, out.stderr
    assert "resolves to sonic@1.3.0#1 (official)" in out.stdout
    data = json.loads(_cli(*args, "--json").stdout)
    assert data["ok"] is True and data["release"]["release_id"] == "sonic@1.3.0#1"


def test_cli_resolve_runtime_refusal_exit_1(world: World) -> None:
    out = _cli(
        "resolve",
        str(EXAMPLE),
        "--registry",
        str(world.tmp / "reg"),
        "--trust",
        str(world.trust_file),
        "--models-dir",
        str(world.models),
        "--runtime-version",
        "1.2.0",
    )
    assert out.returncode == 1
    assert "needs reference_runtime" in out.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[" * 100_000, "nested deeper"),
        (
            '{"nodes": [{"id": 1, "type": "X", "inputs": [{"name": "a", "link": 9}]}], '
            '"links": []}',
            "dangling link",
        ),
        (
            '{"1": {"class_type": "A", "inputs": {"x": ["2", 0]}}, '
            '"2": {"class_type": "B", "inputs": {"y": ["1", 0]}}}',
            "cycle",
        ),
        ('{"1": {"class_type": "A", "inputs": {"x": ["7", 0]}}}', "source node 7 does not exist"),
        ('{"hello": 1}', "expected a ComfyUI workflow"),
    ],
)
def test_cli_structural_errors_exit_2(world: World, content: str, message: str) -> None:
    bad = world.tmp / "bad.json"
    bad.write_text(content)
    out = _cli(
        "resolve",
        str(bad),
        "--registry",
        str(world.tmp / "reg"),
        "--trust",
        str(world.trust_file),
        "--models-dir",
        str(world.models),
    )
    assert out.returncode == 2, out.stderr
    assert message in out.stderr and "Traceback" not in out.stderr


def test_cli_huge_json_exit_2(world: World) -> None:
    bad = world.tmp / "huge.json"
    bad.write_bytes(b'{"a": "' + b"x" * (17 * 1024 * 1024) + b'"}')
    out = _cli(
        "resolve", str(bad), "--registry", str(world.tmp / "reg"), "--trust", str(world.trust_file)
    )
    assert out.returncode == 2 and "larger than" in out.stderr


def test_every_combination_of_two_releases_resolves_iff_unmixed(world: World) -> None:
    import itertools

    names = ("unet.pth", "audio2token.pth", "audio2bucket.pth", "svd_xt_1_1.safetensors")
    for combo in itertools.product((world.v12, world.v13), repeat=len(names)):
        for bundle, name in zip(combo, names, strict=True):
            install(bundle, world.models, only=(name,))
        res = analyze_graph(load_graph(EXAMPLE), world.registry, world.models)
        if len(set(combo)) == 1:
            assert res.ok, [str(p) for p in res.problems]
            assert res.release is not None
            assert res.release.release.version == ("1.2.0" if combo[0] == world.v12 else "1.3.0")
        else:
            assert [type(p) for p in res.problems] == [MixedReleaseError]
            text = str(res.problems[0])
            for bundle, name in zip(combo, names, strict=True):
                version = "1.2.0" if bundle == world.v12 else "1.3.0"
                assert f"sonic {version} step" in text and name in text


def test_pipeline_file_must_be_the_named_component(world: World) -> None:
    p = _pipeline(
        world.tmp,
        '[nodes.enc]\nfile = "sonic/audio2token.pth"\n'
        'component = { model = "sonic", version = "1.3.0", role = "unet" }\n',
    )
    with pytest.raises(InterfaceMismatchError, match=r"the file is audio_encoder of sonic 1\.3\.0"):
        resolve_graph(p, world.registry, world.models)
