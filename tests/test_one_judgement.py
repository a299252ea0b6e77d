"""One judgement everywhere: resolve, the workflows hook and check-params agree on a
workflow's parameters; releases are bound to a model; a pipeline node named after a
role binds it; a mixed-release message names the release to change."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from sonic_install import WORKFLOWS, make_registry
from test_catalog import FLAT, local_catalog

from sonic_registry.cli import main
from sonic_registry.errors import MixedReleaseError
from sonic_registry.precommit import main as hook_main
from sonic_registry.precommit.workflows_hook import is_workflow
from sonic_registry.resolver import analyze_graph, load_graph
from sonic_registry.workflows import InterfaceMismatchError, graph_format

EXAMPLE = WORKFLOWS / "smthemex-ComfyUI_Sonic" / "example.json"  # min_resolution 256
REFUSAL = "min_resolution=256 is below the allowed 512..2048"


@pytest.fixture
def published_tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A flat ComfyUI tree whose files *are* the published ones (for this test's catalog)."""
    root = tmp_path / "models"
    files = {}
    for role, rel in {**FLAT, "svd": "checkpoints/svd_xt_1_1.safetensors"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(role.encode() * 512)
        files[role] = root / rel
    cat = local_catalog(files)
    monkeypatch.setattr("sonic_registry.catalog.load_catalog", lambda: cat)
    return root


def test_resolve_hook_and_check_params_give_the_same_params_verdict(
    published_tree: Path, trust_file: Path, capsys: pytest.CaptureFixture[str], good_workflow: Path
) -> None:
    runner = CliRunner()
    models = ["--models-dir", str(published_tree)]
    resolved = runner.invoke(main, ["resolve", str(EXAMPLE), *models])
    assert resolved.exit_code == 1 and REFUSAL in resolved.stderr, resolved.output
    checked = runner.invoke(main, ["check-params", "--workflow", str(EXAMPLE), *models])
    assert checked.exit_code == 1 and f"error: {REFUSAL}" in checked.stdout, checked.output
    # Without --models-dir, check-params takes the published release's ranges.
    bare = runner.invoke(main, ["check-params", "--workflow", str(EXAMPLE), "--json"])
    assert bare.exit_code == 1 and json.loads(bare.stdout)["channel"] == "published"
    code = hook_main(["workflows", "--trust", str(trust_file), *models, str(EXAMPLE)])
    assert code == 1 and REFUSAL in capsys.readouterr().out
    # And a workflow in range passes all three.
    good = good_workflow
    assert runner.invoke(main, ["resolve", str(good), *models]).exit_code == 0
    assert runner.invoke(main, ["check-params", "--workflow", str(good), *models]).exit_code == 0
    assert hook_main(["workflows", "--trust", str(trust_file), *models, str(good)]) == 0


def test_a_swapped_fixed_path_file_changes_resolve_and_hook(
    published_tree: Path, trust_file: Path, capsys: pytest.CaptureFixture[str], good_workflow: Path
) -> None:
    good = good_workflow
    models = ["--models-dir", str(published_tree)]
    assert hook_main(["workflows", "--trust", str(trust_file), *models, str(good)]) == 0
    (published_tree / "sonic/audio2token.pth").write_bytes(b"swapped" * 100)
    capsys.readouterr()
    assert hook_main(["workflows", "--trust", str(trust_file), *models, str(good)]) == 1
    assert "sonic/audio2token.pth" in capsys.readouterr().out
    out = CliRunner().invoke(main, ["resolve", str(good), *models])
    assert out.exit_code == 1 and "sonic/audio2token.pth" in out.stderr


def test_one_format_sniffer_for_parser_and_hook(tmp_path: Path) -> None:
    for path in sorted(WORKFLOWS.rglob("*.json")):
        doc = json.loads(path.read_text())
        assert graph_format(doc) == load_graph(path).format
        assert is_workflow(path)
    pipeline = tmp_path / "p.toml"
    pipeline.write_text('[nodes.unet]\nfile = "sonic/unet.pth"\n')
    assert load_graph(pipeline).format == "pipeline.toml" and is_workflow(pipeline)
    # A JSON document shaped like a pipeline is no ComfyUI workflow.
    other = tmp_path / "package.json"
    other.write_text('{"nodes": {"a": {}}}')
    assert graph_format(json.loads(other.read_text())) == "pipeline.toml"
    assert not is_workflow(other)


# --- releases and roles -------------------------------------------------------------


def _two_models(make_bundle: Callable[..., Path], svd_version: str) -> tuple[Path, Path]:
    sonic = make_bundle(
        "sonic13",
        version="1.3.0",
        files={"audio_encoder": "audio2token.pth", "motion_decoder": "audio2bucket.pth"},
    )
    svd = make_bundle(
        "svd", model="svd", version=svd_version, files={"svd": "svd_xt_1_1.safetensors"}
    )
    return sonic, svd


@pytest.mark.parametrize("svd_version", ["1.1.0", "2.0.0"])
def test_mixed_release_message_names_the_release_to_change(
    tmp_path: Path, make_bundle: Callable[..., Path], trust_file: Path, svd_version: str
) -> None:
    sonic, svd = _two_models(make_bundle, svd_version)
    reg = make_registry(tmp_path / "reg", trust_file, [sonic, svd])
    models = tmp_path / "models"
    for src, rel in (
        (sonic / "audio2token.pth", "enc.pth"),
        (sonic / "audio2bucket.pth", "dec.pth"),
        (svd / "svd_xt_1_1.safetensors", "svd.safetensors"),
    ):
        models.mkdir(exist_ok=True)
        shutil.copyfile(src, models / rel)
    pipe = tmp_path / "pipeline.toml"
    pipe.write_text(
        '[nodes.audio_encoder]\nfile = "enc.pth"\n[nodes.motion_decoder]\nfile = "dec.pth"\n'
        '[nodes.svd]\nfile = "svd.safetensors"\n'
    )
    res = analyze_graph(load_graph(pipe), reg, models)
    (mixed,) = [p for p in res.problems if isinstance(p, MixedReleaseError)]
    # Whatever SVD's version number, the fix is in Sonic's release file.
    assert f"change sonic 1.3.0's release.toml: declare svd {svd_version}" in str(mixed)
    assert "compatible_with" in str(mixed)


def test_pipeline_node_named_after_a_role_binds_it(
    tmp_path: Path, make_bundle: Callable[..., Path], trust_file: Path
) -> None:
    sonic, _ = _two_models(make_bundle, "1.1.0")
    reg = make_registry(tmp_path / "reg", trust_file, [sonic])
    pipe = tmp_path / "pipeline.toml"
    body = '[nodes.audio_encoder]\nfile = "{enc}"\n[nodes.motion_decoder]\nfile = "{dec}"\n'
    pipe.write_text(body.format(enc="audio2token.pth", dec="audio2bucket.pth"))
    assert analyze_graph(load_graph(pipe), reg, sonic).ok
    pipe.write_text(body.format(enc="audio2bucket.pth", dec="audio2token.pth"))  # swapped
    res = analyze_graph(load_graph(pipe), reg, sonic)
    lines = [str(p) for p in res.problems if isinstance(p, InterfaceMismatchError)]
    assert len(lines) == 2 and "expected the audio_encoder component" in " ".join(lines)


def test_verify_model_refuses_a_bundle_of_another_model(
    make_bundle: Callable[..., Path], trust_file: Path
) -> None:
    dice = make_bundle("dice", model="dicetalk", version="1.0.0")  # signed by the official key
    before = trust_file.read_bytes()
    args = ["verify", str(dice), "--trust", str(trust_file)]
    out = CliRunner().invoke(main, [*args, "--model", "sonic"])
    assert out.exit_code == 1, out.output
    assert "release.model: expected 'sonic', found 'dicetalk'" in out.stderr
    assert trust_file.read_bytes() == before  # nothing recorded for a refused release
    assert CliRunner().invoke(main, [*args, "--model", "dicetalk"]).exit_code == 0


def test_a_release_of_another_model_never_satisfies_a_sonic_graph(
    tmp_path: Path, make_bundle: Callable[..., Path], trust_file: Path, good_workflow: Path
) -> None:
    from sonic_install import SONIC_FILES, install

    dice = make_bundle("dice", model="dicetalk", version="1.0.0", files=SONIC_FILES)
    reg = make_registry(tmp_path / "reg", trust_file, [dice])
    models = install(dice, tmp_path / "models")
    graph = load_graph(good_workflow)
    assert graph.model == "sonic"
    res = analyze_graph(graph, reg, models)
    assert res.release is not None and res.release.release.model == "dicetalk"
    assert any(
        "a release of another model never satisfies a sonic graph" in str(p) for p in res.problems
    )


def test_whisper_tiny_is_an_input_of_sonic_predata(
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    trust_file: Path,
    capsys: pytest.CaptureFixture[str],
    good_workflow: Path,
) -> None:
    from sonic_install import SONIC_FILES, install

    v13 = make_bundle("v13", files={**SONIC_FILES, "whisper": "whisper.safetensors"})
    make_registry(tmp_path / "reg", trust_file, [v13]).close()
    models = install(v13, tmp_path / "models")
    whisper = models / "sonic/whisper-tiny/model.safetensors"
    whisper.parent.mkdir(parents=True)
    shutil.copyfile(v13 / "whisper.safetensors", whisper)
    good = good_workflow
    src = ["--registry", str(tmp_path / "reg"), "--trust", str(trust_file)]
    args = ["resolve", str(good), *src, "--models-dir", str(models)]
    assert CliRunner().invoke(main, args).exit_code == 0
    hook = ["workflows", "--trust", str(trust_file), "--registry", str(tmp_path / "reg")]
    hook += ["--models-dir", str(models), str(good)]
    assert hook_main(hook) == 0
    # An edited whisper-tiny file changes both verdicts: the release signs its digest.
    whisper.write_bytes(whisper.read_bytes()[:-4] + b"\0\0\0\0")
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 1 and "sonic/whisper-tiny/model.safetensors" in out.stderr
    capsys.readouterr()
    assert hook_main(hook) == 1
    assert "whisper-tiny/model.safetensors" in capsys.readouterr().out


def test_whisper_tiny_without_a_recorded_digest_is_not_checked(
    published_tree: Path, good_workflow: Path
) -> None:
    whisper = published_tree / "sonic/whisper-tiny/model.safetensors"
    whisper.parent.mkdir(parents=True)
    whisper.write_bytes(b"whisper" * 64)
    good = good_workflow
    out = CliRunner().invoke(main, ["resolve", str(good), "--models-dir", str(published_tree)])
    assert out.exit_code == 0, out.output
    assert "whisper-tiny/model.safetensors: not checked: no known release records" in out.stderr
    doc = CliRunner().invoke(main, ["doctor", str(published_tree), "--json"])
    rows = {r["path"]: r for r in json.loads(doc.stdout)["files"]}
    row = rows["sonic/whisper-tiny/model.safetensors"]
    assert row["status"] == "unchecked" and not row["problem"]
    assert "records no digest of whisper-tiny/model.safetensors" in row["advice"]


def test_a_policy_can_require_signed_releases(published_tree: Path, good_workflow: Path) -> None:
    good = good_workflow
    args = ["resolve", str(good), "--models-dir", str(published_tree)]
    out = CliRunner().invoke(main, args)
    assert out.exit_code == 0 and "resolves to sonic@2025.1.14 (published" in out.stdout
    out = CliRunner().invoke(main, [*args, "--require-signed"])
    assert out.exit_code == 1
    assert "the policy requires a signed release; sonic@2025.1.14 is published" in out.stderr
