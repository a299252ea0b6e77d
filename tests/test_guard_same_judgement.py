"""One workflow, four judges: resolve, the workflows hook, check-params --workflow and
the ComfyUI pack's guard all give the same parameter verdict (params.check_graph_params)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_fps_rule import variant
from test_one_judgement import published_tree  # noqa: F401  (fixture)

from sonic_registry.cli import main
from sonic_registry.comfyui_pack.config import PackConfig
from sonic_registry.comfyui_pack.context import open_context
from sonic_registry.comfyui_pack.guard import guard_prompt
from sonic_registry.precommit import main as hook_main


def _four(
    workflow: Path, models_dir: Path, trust_file: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[tuple[int, str], ...]:
    """(exit code or guard verdict, output) of resolve, check-params, the hook and the guard."""
    runner = CliRunner()
    models = ["--models-dir", str(models_dir)]
    resolved = runner.invoke(main, ["resolve", str(workflow), *models])
    checked = runner.invoke(main, ["check-params", "--workflow", str(workflow), *models])
    capsys.readouterr()
    hooked = hook_main(["workflows", "--trust", str(trust_file), *models, str(workflow)])
    hook_out = capsys.readouterr().out
    ctx = open_context(PackConfig("defaults"), models_dir)
    verdict = guard_prompt(json.loads(workflow.read_text()), ctx)
    params = [f for f in verdict.refused if f.kind.startswith("params")]
    return (
        (resolved.exit_code, resolved.stderr),
        (checked.exit_code, checked.stdout),
        (hooked, hook_out),
        (1 if params else 0, "\n".join(f.message[0] for f in params)),
    )


def test_resolve_hook_check_params_and_guard_agree(
    tmp_path: Path,
    good_workflow: Path,
    published_tree: Path,  # noqa: F811
    trust_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # use_interframe off with fps 25: the catalog's rule says 12.5, an error.
    bad = variant(good_workflow, tmp_path, interframe=False, fps=25)
    results = _four(bad, published_tree, trust_file, capsys)
    (line,) = [x for x in results[1][1].splitlines() if x.startswith("error: fps=")]
    message = line.removeprefix("error: ")
    assert message.endswith("use fps=12.5"), message
    for code, output in results:
        assert code == 1 and message in output, (code, output)
    # With fps 12.5 all four accept the parameters.
    good = variant(good_workflow, tmp_path, interframe=False, fps=12.5)
    assert [code for code, _ in _four(good, published_tree, trust_file, capsys)] == [0, 0, 0, 0]
