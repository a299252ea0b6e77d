"""--require-signed, one policy flag (cli.registry.require_signed_option) and one rule
(identify.unsigned_refusal) on resolve, check-params --workflow, identify, doctor and
the workflows hook: the built-in catalog's published (unsigned) release then does not
count, with the same words and exit code 1 everywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_one_judgement import published_tree  # noqa: F401  (fixture)

from sonic_registry.cli import main
from sonic_registry.precommit import main as hook_main

POLICY = "the policy requires a signed release; sonic@2025.1.14 is published"
#: The whole refusal, word for word the same from every command.
REFUSAL = (
    "the policy requires a signed release; sonic@2025.1.14 is published, signed by nobody "
    "(give --registry with a signed release)"
)


@pytest.mark.parametrize("flag", [[], ["--require-signed"]])
def test_require_signed_refuses_published_files_everywhere(
    flag: list[str],
    good_workflow: Path,
    published_tree: Path,  # noqa: F811
    trust_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    runner = CliRunner()
    models = ["--models-dir", str(published_tree)]
    want = 1 if flag else 0
    resolved = runner.invoke(main, ["resolve", str(good_workflow), *models, *flag])
    assert resolved.exit_code == want and (POLICY in resolved.output) == bool(flag), resolved.output
    for where in (models, []):  # with the files, and against the published ranges alone
        checked = runner.invoke(
            main, ["check-params", "--workflow", str(good_workflow), *where, *flag]
        )
        assert checked.exit_code == want, checked.output
        assert (POLICY in checked.output) == bool(flag), checked.output
    capsys.readouterr()
    hooked = hook_main(
        ["workflows", "--trust", str(trust_file), *models, *flag, str(good_workflow)]
    )
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
    assert refused.exit_code == 1 and POLICY in refused.stderr, refused.output


def test_require_signed_is_one_rule_with_one_wording(
    published_tree: Path,  # noqa: F811
    good_workflow: Path,
) -> None:
    """resolve, check-params, identify and doctor refuse in the same words, exit 1."""
    runner = CliRunner()
    unet = published_tree / "sonic" / "unet.pth"
    models = ["--models-dir", str(published_tree)]
    runs = {
        "resolve": (["resolve", str(good_workflow), *models], str(good_workflow)),
        "check-params": (
            ["check-params", "--workflow", str(good_workflow), *models],
            str(good_workflow),
        ),
        "identify": (["identify", str(unet)], str(unet)),
        "doctor": (["doctor", str(published_tree)], str(unet)),
    }
    for name, (args, source) in runs.items():
        out = runner.invoke(main, [*args, "--require-signed"])
        assert out.exit_code == 1, (name, out.output)
        assert f"error: {source}: {REFUSAL}" in out.output, (name, out.output)
    # In JSON the refusals are listed under "errors" too, one per unsigned file.
    for args in (["identify", str(unet)], ["doctor", str(published_tree)]):
        out = runner.invoke(main, [*args, "--require-signed", "--json"])
        errors = json.loads(out.stdout)["errors"]
        assert out.exit_code == 1 and str(unet) in [e["where"] for e in errors], out.output
        assert all(e["detail"] == REFUSAL for e in errors), errors
