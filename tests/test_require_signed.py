"""--require-signed, one policy flag (cli.registry.require_signed_option and
resolver.unsigned_refusal) on resolve, check-params --workflow and the workflows
hook: the built-in catalog's published (unsigned) release then does not count."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sonic_install import WORKFLOWS
from test_one_judgement import published_tree  # noqa: F401  (fixture)

from sonic_registry.cli import main
from sonic_registry.precommit import main as hook_main

GOOD = WORKFLOWS / "smthemex-ComfyUI_Sonic" / "20250216.json"
POLICY = "the policy requires a signed release; sonic@2025.1.14 is published"


@pytest.mark.parametrize("flag", [[], ["--require-signed"]])
def test_require_signed_refuses_published_files_everywhere(
    flag: list[str],
    published_tree: Path,  # noqa: F811
    trust_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runner = CliRunner()
    models = ["--models-dir", str(published_tree)]
    want = 1 if flag else 0
    resolved = runner.invoke(main, ["resolve", str(GOOD), *models, *flag])
    assert resolved.exit_code == want and (POLICY in resolved.output) == bool(flag), resolved.output
    for where in (models, []):  # with the files, and against the published ranges alone
        checked = runner.invoke(main, ["check-params", "--workflow", str(GOOD), *where, *flag])
        assert checked.exit_code == want, checked.output
        assert (POLICY in checked.output) == bool(flag), checked.output
    capsys.readouterr()
    hooked = hook_main(["workflows", "--trust", str(trust_file), *models, *flag, str(GOOD)])
    assert hooked == want and (POLICY in capsys.readouterr().out) == bool(flag)


def test_identify_require_signed_does_not_count_published_files(
    published_tree: Path,  # noqa: F811
) -> None:
    unet = str(published_tree / "sonic" / "unet.pth")
    runner = CliRunner()
    assert runner.invoke(main, ["identify", unet]).exit_code == 0
    refused = runner.invoke(main, ["identify", unet, "--require-signed", "--json"])
    assert refused.exit_code == 1 and "requires a signed release" in refused.stderr, refused.output


def test_doctor_require_signed_does_not_count_published_files(
    published_tree: Path,  # noqa: F811
) -> None:
    runner = CliRunner()
    plain = runner.invoke(main, ["doctor", str(published_tree), "--json"])
    assert plain.exit_code == 0, plain.output
    refused = runner.invoke(main, ["doctor", str(published_tree), "--require-signed"])
    assert refused.exit_code == 1 and "requires signed releases" in refused.stderr, refused.output
