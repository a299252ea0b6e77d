"""The TUF registry benchmark's harness runs end to end at a tiny size (no timing asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # bench/ is a top-level package of the repo, not installed
    sys.path.insert(0, str(REPO))

from bench import registry_tuf  # noqa: E402


@pytest.mark.slow
def test_registry_tuf_benchmark_harness_runs() -> None:
    result = registry_tuf.run(releases=12, delay_ms=0, memory_sizes=[], reps=1)
    for case in ("first", "unchanged", "one_new", "unchanged_after"):
        assert result[case]["exit_code"] == 0, result[case]
    assert result["first"]["releases_listed"] == 12
    assert result["one_new"]["releases_listed"] == 13
    # One refresh of an unchanged registry: the next root version and the timestamp.
    assert result["unchanged"]["requests"] == 2
    assert result["one_new"]["requests"] <= 5
    verdicts = registry_tuf.verdicts(result)
    assert len(verdicts) == 3 and all(v.split()[0] in ("PASS", "FAIL") for v in verdicts)
