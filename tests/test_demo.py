"""`make demo`'s steps, run for real with a smaller config (3 s of audio, 128 px frames)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image


def _demo(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reference_runtime", "demo", "--out", str(out), *extra],
        capture_output=True,
        text=True,
    )


def test_demo_runs_every_step(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    proc = _demo(out, "--seconds", "3", "--size", "128")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = proc.stdout
    assert "FAIL" not in text and "every step behaved as expected" in text
    # Step 1: three signed releases, the community one labelled as such.
    assert "sonic-reference@1.3.1#1 (non-official)" in text
    # Step 2 and 3: the consistent run is in sync, the forced mixed run ~300 ms late.
    good = re.search(r"ok\.mp4: offset ([+-]\d+) ms", text)
    mixed = re.search(r"mixed\.mp4: offset ([+-]\d+) ms", text)
    assert good and mixed, text
    assert abs(int(good.group(1))) < 40
    assert 250 <= int(mixed.group(1)) <= 350
    assert "refused (MixedReleaseError, exit 1)" in text
    # Step 4: each refusal names its reason.
    for reason in (
        "DigestMismatchError",
        "expected a signed release, found no release.dsse.json",
        "UnsignedReleaseError",
        "IncompatibleRuntimeError",
        "does not match the audio length",
        "dynamic_scale=2.0 is above the allowed",
    ):
        assert reason in text, reason
    # Step 5: the audit log answers which release made ok.mp4.
    assert "ok, 3 record(s) chained" in text
    assert "sonic-reference@1.3.1#1 labelled non-official" in text
    assert "release: sonic-reference@1.3.0#1 (official)" in text
    records = [json.loads(line) for line in (out / "generations.jsonl").read_text().splitlines()]
    ids = [r["release"]["id"] for r in records]
    assert ids == ["sonic-reference@1.3.0#1", "sonic-reference@1.3.1#1", "sonic-reference@1.3.0#1"]
    labels = ["official", "non-official", "UNSAFE mixed releases (official)"]
    assert [r["label"] for r in records] == labels
    assert ["unsafe_mixed_releases" in r for r in records] == [False, False, True]
    assert sorted(p.name for p in out.glob("*.mp4")) == ["community.mp4", "mixed.mp4", "ok.mp4"]
    with Image.open(out / "sync.png") as plot:
        assert plot.format == "PNG" and plot.width > 500


def test_demo_does_not_clear_a_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    proc = _demo(tmp_path)
    assert proc.returncode == 2
    assert "not a demo output directory" in proc.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_makefile_demo_target_runs_the_module() -> None:
    makefile = (Path(__file__).resolve().parent.parent / "Makefile").read_text()
    assert re.search(
        r"^demo: install\n\t\$\(BIN\)/python -m reference_runtime demo$", makefile, re.M
    )
