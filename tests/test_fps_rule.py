"""The catalog's fps rule: 25 fps with frame interpolation (use_interframe on),
12.5 without; resolve, the workflows hook and check-params --workflow apply it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_one_judgement import published_tree  # noqa: F401  (fixture)

from sonic_registry.catalog import load_catalog
from sonic_registry.cli import main
from sonic_registry.params import check_graph_params
from sonic_registry.precommit import main as hook_main
from sonic_registry.resolver import load_graph


def variant(good: Path, tmp_path: Path, *, interframe: bool, fps: float) -> Path:
    """The real 20250216.json (``good``) with SONICTLoader's use_interframe and
    SONICSampler's fps set."""
    doc = json.loads(good.read_text())
    for node in doc["nodes"]:
        if node["type"] == "SONICTLoader":
            node["widgets_values"][2] = interframe
        if node["type"] == "SONICSampler":
            node["widgets_values"][4] = fps
    out = tmp_path / f"wf-{interframe}-{fps}.json"
    out.write_text(json.dumps(doc))
    return out


def _fps(path: Path) -> tuple[str, str]:
    release = load_catalog().releases[0].release()
    (item,) = [i for i in check_graph_params(release, load_graph(path)).items if i.name == "fps"]
    return item.status, item.message


def test_fps_follows_frame_interpolation(tmp_path: Path, good_workflow: Path) -> None:
    assert load_graph(good_workflow).interframe is True  # and fps 25
    assert _fps(good_workflow)[0] == "ok"
    status, message = _fps(variant(good_workflow, tmp_path, interframe=False, fps=25))
    assert status == "error" and "\n" not in message
    assert message.startswith("fps=25") and message.endswith("use fps=12.5"), message
    assert _fps(variant(good_workflow, tmp_path, interframe=False, fps=12.5))[0] == "ok"
    status, message = _fps(variant(good_workflow, tmp_path, interframe=True, fps=12.5))
    assert status == "error" and message.endswith("use fps=25"), message


def test_resolve_hook_and_check_params_apply_the_fps_rule(
    tmp_path: Path,
    good_workflow: Path,
    published_tree: Path,  # noqa: F811
    trust_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runner = CliRunner()
    models = ["--models-dir", str(published_tree)]
    bad = variant(good_workflow, tmp_path, interframe=False, fps=25)
    good = variant(good_workflow, tmp_path, interframe=False, fps=12.5)
    resolved = runner.invoke(main, ["resolve", str(bad), *models])
    assert resolved.exit_code == 1 and "use fps=12.5" in resolved.stderr, resolved.output
    checked = runner.invoke(main, ["check-params", "--workflow", str(bad), *models])
    assert checked.exit_code == 1 and "use fps=12.5" in checked.stdout, checked.output
    assert hook_main(["workflows", "--trust", str(trust_file), *models, str(bad)]) == 1
    assert "use fps=12.5" in capsys.readouterr().out
    assert runner.invoke(main, ["resolve", str(good), *models]).exit_code == 0
    assert runner.invoke(main, ["check-params", "--workflow", str(good), *models]).exit_code == 0
    assert hook_main(["workflows", "--trust", str(trust_file), *models, str(good)]) == 0
