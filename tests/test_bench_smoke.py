"""A tiny run of the benchmark suite, so the harness never rots.

It checks that ``python -m bench`` produces well-formed results (JSON, PNG,
Markdown, one verdict line per target), never how fast anything was: CI
machines are too noisy for timing thresholds, and the numbers live in
BENCHMARKS.md.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # bench/ is a top-level package of the repo, not installed
    sys.path.insert(0, str(REPO))

from bench.data import parse_size  # noqa: E402
from bench.report import BEGIN, END, splice_markdown  # noqa: E402

TARGETS = {
    "verify-vs-hash-limit@1MiB",
    "verify-vs-hash-limit@2MiB",
    "verify-vs-model_signing",
    "hook-warm-cache",
    "verified-load",
    "help-startup",
    "resolver-1000-nodes",
    "verify-memory-flat",
}

_VERIFY = (
    "sonic-registry verify",
    "sonic-registry verify (1 thread)",
    *(("sonic-registry verify (BLAKE3)",) if importlib.util.find_spec("blake3") else ()),
)
#: The groups the smoke run asks for (--only verify,sign,startup,resolver) and
#: the cases each must have measured.
EXPECTED = {
    "verify-1048576": _VERIFY,
    "verify-2097152": _VERIFY,
    "sign": ("sonic-registry sign", "model_signing sign"),
    "startup": ("python -c pass", "sonic-registry --help"),
    "resolver": ("parse workflow (load_graph)", "resolve"),
}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("bench")
    argv = [
        sys.executable,
        "-m",
        "bench",
        "--size",
        "2M",
        "--sizes",
        "1M,2M",
        "--reps",
        "1",
        "--warmup",
        "0",
        "--only",
        "verify,sign,startup,resolver",
        "--data-dir",
        str(out / "data"),
        "--out",
        str(out / "results"),
        "--markdown",
        str(out / "BENCHMARKS.md"),
    ]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, proc.stdout


def test_json_is_well_formed(smoke: tuple[Path, str]) -> None:
    out, _ = smoke
    doc = json.loads((out / "results" / "latest.json").read_text())
    assert doc["schema"] == 1
    assert doc["machine"]["cores"] >= 1 and doc["machine"]["cpu"]
    assert doc["settings"]["sizes_bytes"] == [1 << 20, 2 << 20]
    groups = doc["groups"]
    assert {"verify-1048576", "verify-2097152", "sign", "startup", "resolver"} <= set(groups)
    verify = groups["verify-2097152"]["cases"]
    for case in ("sonic-registry verify", "sonic-registry verify (1 thread)"):
        s = verify[case]
        assert 0 < s["min_s"] <= s["median_s"] <= s["max_s"]
        assert s["reps"] == 1 and len(s["samples_s"]) == 1
        assert s["max_rss_bytes"] > 1 << 20  # a real peak RSS, in bytes
    for group in groups.values():
        for result in group["cases"].values():
            # every row is a measurement or says why it is not one
            assert ("median_s" in result) != ("not_measured" in result)
    assert {t["name"] for t in doc["targets"]} == TARGETS


def test_every_requested_group_ran(smoke: tuple[Path, str]) -> None:
    """A group that crashed is only a "(group)" not_measured row: the run still exits 0."""
    out, _ = smoke
    groups = json.loads((out / "results" / "latest.json").read_text())["groups"]
    assert set(EXPECTED) <= set(groups)
    for name, cases in EXPECTED.items():
        results = groups[name]["cases"]
        assert "(group)" not in results, f"{name}: {results.get('(group)')}"
        for case in cases:
            assert results.get(case, {}).get("median_s", 0) > 0, f"{name}: {case}: {results}"


def test_verdict_lines_and_markdown(smoke: tuple[Path, str]) -> None:
    out, stdout = smoke
    lines = stdout.strip().splitlines()
    assert len(lines) == len(TARGETS)
    assert all(line.split()[0] in ("PASS", "FAIL", "NOT") for line in lines)
    md = (out / "BENCHMARKS.md").read_text()
    assert BEGIN in md and END in md
    assert "| sonic-registry verify |" in md
    png = (out / "results" / "throughput.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


def test_splice_keeps_hand_written_text(tmp_path: Path) -> None:
    path = tmp_path / "B.md"
    path.write_text(f"# Title\n\nnotes before\n\n{BEGIN}\nold\n{END}\n\nnotes after\n")
    splice_markdown(path, f"{BEGIN}\nnew\n{END}\n")
    text = path.read_text()
    assert "notes before" in text and "notes after" in text
    assert "new" in text and "old" not in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("256M", 256 << 20), ("1G", 1 << 30), ("4GiB", 4 << 30), ("123", 123), ("1.5K", 1536)],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_bench_ui_to_api_names_widgets_as_the_workflow_parser_does(good_workflow: Path) -> None:
    """bench's UI -> API conversion calls the parser's own widget naming
    (comfyui_nodes.name_widget_values): both read the same parameters, with a seed
    control or without, and neither trips over a value after a seed that is not text."""
    from bench.comfyui_server import ui_to_api
    from sonic_registry.workflows.comfyui import parse_workflow

    ui = json.loads(good_workflow.read_text("utf-8"))
    sampler = next(n for n in ui["nodes"] if n["type"] == "SONICSampler")
    seed, control, *rest = sampler["widgets_values"]
    assert control == "randomize"
    # Only a seed-control word is skipped; anything else is the next widget's value.
    cases = [([seed, control, *rest], rest[0]), ([seed, *rest], rest[0]), ([seed, [1], *rest], [1])]
    for values, steps in cases:
        sampler["widgets_values"] = values
        api = ui_to_api(ui)
        inputs = api[str(sampler["id"])]["inputs"]
        assert (inputs["seed"], inputs["inference_steps"]) == (seed, steps), values
        want = parse_workflow(ui, source="ui").params
        assert parse_workflow(api, source="api").params == want, values
