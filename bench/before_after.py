"""Time ``sonic-registry verify`` of an older commit against the working tree, interleaved.

``python -m bench.before_after REV [--size 1G] [--reps 5]`` extracts REV with
``git archive`` into ``bench/data/rev-<sha>/`` (no checkout, the work tree is
untouched), byte-compiles both trees, and times the same verify command from
each, A B A B ..., on the suite's model and on a tiny bundle (start-up cost).
This is how the before/after rows of BENCHMARKS.md were measured.
"""

from __future__ import annotations

import argparse
import compileall
import subprocess
import sys
from pathlib import Path

from .cases import warm_cache
from .data import ensure_install, ensure_keys, ensure_model, human, parse_size
from .timing import Sample, interleave, run_process

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
_ENTRY = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); from sonic_registry.cli import main; main()"
)


def extract(rev: str, data_dir: Path) -> tuple[str, Path]:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    dest = data_dir / f"rev-{sha}"
    if not (dest / "sonic_registry").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(
            ["git", "archive", sha, "sonic_registry"], cwd=REPO, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    compileall.compile_dir(str(dest / "sonic_registry"), quiet=2)
    compileall.compile_dir(str(REPO / "sonic_registry"), quiet=2)
    return sha, dest


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.before_after", description=__doc__)
    p.add_argument("rev", help="the 'before' commit")
    p.add_argument("--size", default="1G")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--data-dir", type=Path, default=HERE / "data")
    args = p.parse_args(argv)
    sha, before = extract(args.rev, args.data_dir)
    keys = ensure_keys(args.data_dir)
    model = ensure_model(args.data_dir, parse_size(args.size))
    tiny = ensure_install(args.data_dir, keys).bundle
    run_process(
        [
            sys.executable,
            "-c",
            _ENTRY,
            str(REPO),
            "sign",
            str(model.root),
            "--key",
            str(keys.private),
        ]
    )
    warm_cache(list(model.files))
    print(f"verify, {args.reps} interleaved runs each (median / min / max seconds)")
    for label, root in ((human(model.size) + " model", model.root), ("tiny bundle", tiny)):
        verify = ["verify", str(root), "--public-key", str(keys.public), "--no-record"]

        def runner(tree: Path, verify: list[str] = verify) -> Sample:
            return run_process([sys.executable, "-c", _ENTRY, str(tree), *verify])

        stats = interleave(
            {
                f"before ({sha})": lambda: runner(before),
                "after (work tree)": lambda: runner(REPO),
            },
            reps=args.reps,
        )
        for name, s in stats.items():
            print(
                f"{label:<14} {name:<20} {s.median:7.3f} {s.min:7.3f} {s.max:7.3f}"
                f"  peak RSS {human(s.max_rss)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
