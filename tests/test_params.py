"""Parameter classification: every range boundary, strict types, duration vs measured audio."""

from __future__ import annotations

import json
import math
import wave
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from helpers import replace_in_file
from hypothesis import assume, given
from hypothesis import strategies as st

from sonic_registry.cli import main
from sonic_registry.errors import UsageError, VerificationError
from sonic_registry.manifest import ParamRange, Release
from sonic_registry.params import (
    SONIC_PARAMS,
    ParameterRangeError,
    check_params,
    classify,
    coerce_value,
    parse_assignment,
)


def sonic_release(**data: Any) -> Release:
    """A Release carrying SONIC_PARAMS, as `init` writes them."""
    return Release.from_toml_dict(
        {
            "release": {"model": "sonic", "version": "1.3.0"},
            "components": {
                "unet": {"path": "unet.safetensors", "format": "safetensors", "interface": "v2"}
            },
            "data": {"sample_rate": 16000, "fps": 25, **data},
            "params": SONIC_PARAMS,
        }
    )


def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * round(seconds * rate))
    return path


# -- the issue's example and the shipped ranges ---------------------------------------


def test_sonic_params_parse_as_a_release_and_match_the_issue() -> None:
    params = sonic_release().params
    assert params["inference_steps"].recommended == (20, 30)
    assert params["inference_steps"].allowed[0] == 15  # type: ignore[index]
    assert params["dynamic_scale"].recommended == (1.0, 1.2)
    assert params["dynamic_scale"].allowed[1] == 1.3  # type: ignore[index]
    assert params["motion_scale"].recommended == (1.0, 1.1)
    assert params["motion_scale"].allowed[1] == 1.2  # type: ignore[index]
    assert params["min_resolution"].recommended[0] == 768  # type: ignore[index]
    assert params["min_resolution"].allowed[0] == 512  # type: ignore[index]
    assert {"fps", "seed", "expand_ratio"} <= set(params)
    for spec in params.values():
        assert spec.below and spec.above, f"{spec.name} must name its risks"


def test_issue_example_classifies_each_parameter() -> None:
    report = check_params(
        sonic_release(),
        {"inference_steps": 12, "dynamic_scale": 1.25, "motion_scale": 1.05, "seed": 7},
    )
    status = {i.name: i.status for i in report.items}
    assert status == {
        "inference_steps": "error",
        "dynamic_scale": "warning",
        "motion_scale": "ok",
        "seed": "ok",
    }
    assert not report.ok
    assert [w.name for w in report.warnings] == ["dynamic_scale"]
    assert "exaggerated" in report.warnings[0].message
    assert "blurry" in report.errors[0].message
    with pytest.raises(ParameterRangeError, match="inference_steps=12"):
        report.raise_for_errors()
    assert isinstance(ParameterRangeError("x", "y"), VerificationError)
    as_dict = report.to_dict()
    assert as_dict["errors"] == 1 and as_dict["warnings"] == 1 and not as_dict["ok"]
    json.dumps(as_dict)


# -- every boundary, exactly ---------------------------------------------------------------

STEPS = ParamRange("steps", "int", (20, 30), (15, 100), below="blurry", above="slow")
SCALE = ParamRange("scale", "float", (1.0, 1.2), (0.8, 1.3), below="muted", above="exaggerated")


@pytest.mark.parametrize(
    ("value", "status", "risk"),
    [
        (14, "error", "blurry"),
        (15, "warning", "blurry"),
        (19, "warning", "blurry"),
        (20, "ok", ""),
        (30, "ok", ""),
        (31, "warning", "slow"),
        (100, "warning", "slow"),
        (101, "error", "slow"),
    ],
)
def test_int_boundaries(value: int, status: str, risk: str) -> None:
    check = classify(STEPS, value)
    assert check.status == status
    assert risk in check.message
    assert f"steps={value}" in check.message


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (math.nextafter(0.8, 0), "error"),
        (0.8, "warning"),
        (math.nextafter(1.0, 0), "warning"),
        (1.0, "ok"),
        (1.2, "ok"),
        (math.nextafter(1.2, 2), "warning"),
        (1.3, "warning"),
        (math.nextafter(1.3, 2), "error"),
    ],
)
def test_float_boundaries_are_inclusive(value: float, status: str) -> None:
    assert classify(SCALE, value).status == status


def test_missing_ranges_mean_unbounded() -> None:
    only_allowed = ParamRange("x", "float", None, (0.0, 1.0))
    assert classify(only_allowed, 0.5).status == "ok"
    assert classify(only_allowed, 1.5).status == "error"
    only_recommended = ParamRange("y", "float", (0.0, 1.0), None, above="risky")
    assert classify(only_recommended, 1e300).status == "warning"
    assert classify(ParamRange("z", "int"), -(10**30)).status == "ok"


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)


@given(points=st.lists(finite, min_size=4, max_size=4), value=finite)
def test_classification_property(points: list[float], value: float) -> None:
    a_lo, r_lo, r_hi, a_hi = sorted(points)
    spec = ParamRange("p", "float", (r_lo, r_hi), (a_lo, a_hi), below="LOW", above="HIGH")
    check = classify(spec, value)
    if r_lo <= value <= r_hi:
        expected = "ok"
    elif a_lo <= value <= a_hi:
        expected = "warning"
    else:
        expected = "error"
    assert check.status == expected
    if expected != "ok":
        assert ("LOW" if value < r_lo else "HIGH") in check.message


@given(points=st.lists(finite, min_size=4, max_size=4), pick=st.integers(0, 3))
def test_every_bound_is_inclusive_and_one_ulp_outside_is_not(
    points: list[float], pick: int
) -> None:
    a_lo, r_lo, r_hi, a_hi = sorted(points)
    assume(a_lo < r_lo <= r_hi < a_hi)
    spec = ParamRange("p", "float", (r_lo, r_hi), (a_lo, a_hi))
    bound = (a_lo, r_lo, r_hi, a_hi)[pick]
    inside = {0: "warning", 1: "ok", 2: "ok", 3: "warning"}[pick]
    outside = {0: "error", 1: "warning", 2: "warning", 3: "error"}[pick]
    step_out = math.nextafter(bound, -math.inf if pick in (0, 1) else math.inf)
    assert classify(spec, bound).status == inside
    assert classify(spec, step_out).status == outside


@given(lo=st.integers(-1000, 1000), width=st.integers(0, 50), margin=st.integers(1, 50))
def test_int_ranges_property(lo: int, width: int, margin: int) -> None:
    hi = lo + width
    spec = ParamRange("n", "int", (lo, hi), (lo - margin, hi + margin))
    assert classify(spec, lo).status == "ok"
    assert classify(spec, hi).status == "ok"
    assert classify(spec, lo - 1).status == "warning"
    assert classify(spec, hi + margin).status == "warning"
    assert classify(spec, lo - margin - 1).status == "error"
    assert classify(spec, hi + margin + 1).status == "error"


# -- types and malformed input: usage errors --------------------------------------------


@pytest.mark.parametrize(
    ("type_", "raw", "expected"),
    [
        ("int", "25", 25),
        ("int", " -3 ", -3),
        ("int", 25, 25),
        ("int", 25.0, 25),
        ("float", "1.1", 1.1),
        ("float", 2, 2.0),
        ("float", "1e-3", 0.001),
    ],
)
def test_coerce_accepts(type_: str, raw: object, expected: float) -> None:
    value = coerce_value("p", type_, raw)
    assert value == expected
    assert type(value) is (int if type_ == "int" else float)


@pytest.mark.parametrize(
    ("type_", "raw"),
    [
        ("int", "2.5"),
        ("int", 2.5),
        ("int", "1e3"),
        ("int", "twenty"),
        ("int", True),
        ("int", float("nan")),
        ("int", float("inf")),
        ("float", "nan"),
        ("float", "NaN"),
        ("float", "inf"),
        ("float", "-Infinity"),
        ("float", float("nan")),
        ("float", "1.1.1"),
        ("int", "9" * 5000),
        ("int", "-" + "9" * 31),
        ("float", ""),
        ("float", None),
        ("float", [1.0]),
        ("float", False),
    ],
)
def test_coerce_rejects_with_usage_error(type_: str, raw: object) -> None:
    with pytest.raises(UsageError) as info:
        coerce_value("p", type_, raw)
    assert info.value.exit_code == 2
    assert "\n" not in str(info.value)


def test_unknown_name_suggests_the_closest() -> None:
    with pytest.raises(UsageError, match="did you mean 'inference_steps'"):
        check_params(sonic_release(), {"inference_step": 25})
    with pytest.raises(UsageError, match="did you mean 'dynamic_scale'"):
        check_params(sonic_release(), {"dynamic_scal": 1.1})
    with pytest.raises(UsageError, match="unknown parameter") as info:
        check_params(sonic_release(), {"zzzz": 1})
    assert "did you mean" not in str(info.value)


def test_several_problems_are_all_reported() -> None:
    # One exception carrying every problem (errors.raise_all), as verify reports them.
    with pytest.raises(UsageError) as info:
        check_params(sonic_release(), {"inference_steps": "x", "dynamic_scale": "nan"})
    assert info.value.problems[0] is info.value
    assert {e.where for e in info.value.problems} == {"inference_steps", "dynamic_scale"}


@pytest.mark.parametrize("text", ["a", "=1", "a=", "a 1"])
def test_parse_assignment_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_assignment(text)


# -- duration against the measured audio ------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "status"),
    [(9.84, "ok"), (9.80, "ok"), (9.88, "ok"), (9.79, "error"), (9.89, "error"), (9.5, "error")],
)
def test_duration_within_default_tolerance(tmp_path: Path, requested: float, status: str) -> None:
    audio = write_wav(tmp_path / "speech.wav", 9.84)
    report = check_params(sonic_release(), {}, audio=audio, duration=requested)
    (item,) = report.items
    assert item.name == "duration" and item.status == status
    assert report.audio is not None and report.audio.duration == pytest.approx(9.84)
    if status == "error":
        assert "9.840 s" in item.message and "use duration=9.840" in item.message


def test_release_sets_the_tolerance(tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "speech.wav", 4.0)
    loose = sonic_release(duration_tolerance=0.5)
    assert check_params(loose, {}, audio=audio, duration=4.4).ok
    assert not check_params(sonic_release(), {}, audio=audio, duration=4.4).ok


def test_duration_as_a_param_and_audio_alone(tmp_path: Path) -> None:
    audio = write_wav(tmp_path / "speech.wav", 2.0)
    assert check_params(sonic_release(), {"duration": "2.0"}, audio=audio).ok
    (item,) = check_params(sonic_release(), {}, audio=audio).items
    assert item.status == "ok" and "use duration=2.000" in item.message
    with pytest.raises(UsageError, match="given twice"):
        check_params(sonic_release(), {"duration": 2.0}, audio=audio, duration=3.0)


@pytest.mark.parametrize("bad", [-1, 0, "-0.5", "nan", "inf", float("nan"), "abc", True])
def test_bad_durations_are_usage_errors(tmp_path: Path, bad: object) -> None:
    audio = write_wav(tmp_path / "speech.wav", 1.0)
    with pytest.raises(UsageError) as info:
        check_params(sonic_release(), {}, audio=audio, duration=bad)  # type: ignore[arg-type]
    assert info.value.where == "duration"


def test_duration_without_audio_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"without the audio file \(give audio=\)"):
        check_params(sonic_release(), {}, duration=3.0)


def test_unreadable_audio_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no such audio file"):
        check_params(sonic_release(), {}, audio=tmp_path / "missing.wav", duration=1.0)


# -- the command -----------------------------------------------------------------------------


def run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args))


def test_cli_issue_example(make_bundle, official_key, tmp_path: Path) -> None:
    root = make_bundle()
    audio = write_wav(tmp_path / "speech.wav", 9.84)
    result = run(
        "check-params", "--release", str(root), "--public-key", str(official_key.pub_path),
        "--set", "inference_steps=12", "--set", "dynamic_scale=1.25",
        "--audio", str(audio), "--duration", "9.5",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("error: inference_steps=12 is below the allowed 15..100")
    assert lines[1].startswith("warning: dynamic_scale=1.25 is above the recommended 1.0..1.2")
    assert "use duration=9.840" in lines[2]
    assert lines[-1] == "sonic@1.3.0#1: 0 ok, 1 warning(s), 2 error(s)"


def test_cli_ok_and_json(make_bundle, official_key, tmp_path: Path) -> None:
    root = make_bundle()
    audio = write_wav(tmp_path / "speech.wav", 3.0)
    result = run(
        "check-params", "--release", str(root), "--public-key", str(official_key.pub_path),
        "--set", "inference_steps=25", "--audio", str(audio), "--duration", "3", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["exit_code"] == 0 and doc["channel"] == "official"
    assert [i["status"] for i in doc["items"]] == ["ok", "ok"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "inference_step=25"], "did you mean 'inference_steps'"),
        (["--set", "inference_steps=2.5"], "expected an integer"),
        (["--set", "inference_steps=" + "7" * 5000], "at most 30 digits, found one of 5000"),
        (["--set", "dynamic_scale=nan"], "finite"),
        (["--set", "dynamic_scale"], "expected name=value"),
        (["--duration", "-3", "--audio", "AUDIO"], "positive"),
        (["--duration", "3", "--audio", "EMPTY"], "empty file"),
        (["--duration", "3", "--audio", "TEXT"], "not a readable audio file"),
        (["--duration", "3"], "without the audio file (give --audio FILE)"),
        (["--set", "duration=3"], "without the audio file (give --audio FILE)"),
    ],
)
def test_cli_usage_errors_exit_2(
    make_bundle, official_key, tmp_path: Path, args: list[str], message: str
) -> None:
    root = make_bundle()
    files = {
        "AUDIO": write_wav(tmp_path / "a.wav", 3.0),
        "EMPTY": tmp_path / "empty.wav",
        "TEXT": tmp_path / "notes.mp3",
    }
    files["EMPTY"].write_bytes(b"")
    files["TEXT"].write_text("this is not audio\n" * 50)
    args = [str(files[a]) if a in files else a for a in args]
    result = run(
        "check-params", "--release", str(root), "--public-key", str(official_key.pub_path), *args
    )
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_cli_refuses_a_tampered_release(make_bundle, official_key) -> None:
    root = make_bundle()
    toml = root / "release.toml"
    replace_in_file(toml, "allowed = [\n    15,\n", "allowed = [\n    1,\n")
    result = run(
        "check-params", "--release", str(root), "--public-key", str(official_key.pub_path),
        "--set", "inference_steps=5",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "release.toml" in result.stderr


def test_cli_takes_the_release_from_a_registry(make_bundle, official_key, tmp_path: Path) -> None:
    root = make_bundle()
    reg = tmp_path / "registry"
    pub = str(official_key.pub_path)
    added = run(
        "registry", "add", str(root / "release.dsse.json"), "--registry", str(reg),
        "--public-key", pub,
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    result = run(
        "check-params", "--registry", str(reg), "sonic", "1.3.0", "--public-key", pub,
        "--set", "dynamic_scale=1.3", "--set", "inference_steps=101",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert result.stdout.splitlines()[:2] == [
        "warning: dynamic_scale=1.3 is above the recommended 1.0..1.2: "
        "above 1.2 expressions look exaggerated",
        "error: inference_steps=101 is above the allowed 15..100: "
        "above 30 steps costs time for no gain",
    ]
    missing = run("check-params", "--registry", str(reg), "sonic", "9.0", "--public-key", pub)
    assert missing.exit_code == 2 and "no release sonic@9.0" in missing.stderr
    both = run("check-params", "--registry", str(reg), "--release", str(root))
    assert both.exit_code == 2 and "either --release" in both.stderr


def test_check_params_workflow_refuses_set_before_reading_the_workflow(tmp_path: Path) -> None:
    # The usage error comes first: the workflow is not loaded nor its files hashed.
    missing = tmp_path / "no-such-workflow.json"
    result = CliRunner().invoke(
        main, ["check-params", "--workflow", str(missing), "--set", "fps=25"]
    )
    assert result.exit_code == 2, result.output
    assert "drop --set/--audio" in result.output, result.output


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--workflow", "W", "--release", "R"], "--release: does not apply with --workflow"),
        (["--workflow", "W", "--allow-unsigned"], "--allow-unsigned: does not apply with"),
        (["--release", "R", "--models-dir", "M"], "--models-dir: applies only with --workflow"),
        (["--release", "R", "--no-builtin-catalog"], "--no-builtin-catalog: applies only"),
    ],
)
def test_check_params_refuses_a_flag_it_would_ignore(
    args: list[str], flag: str, tmp_path: Path, good_workflow: Path
) -> None:
    """A flag that does not apply is one usage line (exit 2), before anything is read."""
    workflow = good_workflow
    paths = {"W": str(workflow), "R": str(tmp_path), "M": str(tmp_path)}
    result = CliRunner().invoke(main, ["check-params", *[paths.get(a, a) for a in args]])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and f"error: {flag}" in result.stderr, result.stderr
    assert result.stdout == ""
