"""Time ``sonic-registry verify`` of an older commit against the working tree, interleaved.

``python -m bench.before_after REV [--sizes 256M,1G,4G] [--reps 5]`` extracts REV with
``git archive`` into ``bench/data/rev-<sha>/`` (no checkout, the work tree is
untouched), byte-compiles both trees, and times the same verify command from
each, A B C A B C ..., on the suite's model of each size together with the hash
limit (two ``openssl dgst -sha256`` over balanced halves, same run), and on a
tiny bundle (start-up cost).
This is how the before/after rows of BENCHMARKS.md were measured.
"""

from __future__ import annotations

import argparse
import compileall
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .cases import openssl_x2, warm_cache
from .data import Keys, ensure_install, ensure_keys, ensure_model, human, parse_size
from .timing import Sample, interleave, run_process

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
#: The tree's console script (``sonic_registry.console.run``; ``cli.main`` before it existed).
#: Decided by the file, not by trying the import: the work tree's editable install would
#: answer ``import sonic_registry.console`` for an older tree that lacks it.
_ENTRY = (
    "import os, sys; tree = sys.argv.pop(1); sys.path.insert(0, tree)\n"
    "if os.path.exists(os.path.join(tree, 'sonic_registry', 'console.py')):\n"
    "    from sonic_registry.console import run\n"
    "else:\n"
    "    from sonic_registry.cli import main as run\n"
    "run()"
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


def _verify_runner(tree: Path, root: Path, keys: Keys) -> Callable[[], Sample]:
    verify = ["verify", str(root), "--public-key", str(keys.public), "--no-record"]
    return lambda: run_process([sys.executable, "-c", _ENTRY, str(tree), *verify])


def compare(sha: str, before: Path, root: Path, files: list[Path], keys: Keys, reps: int) -> None:
    """Interleave before, after and (for a model) the hash limit; print one row each."""
    cases = {
        f"before ({sha})": _verify_runner(before, root, keys),
        "after (work tree)": _verify_runner(REPO, root, keys),
    }
    if files:
        cases["openssl dgst -sha256 x2"] = lambda: run_process(openssl_x2(tuple(files)))
    warm_cache(files)
    stats = interleave(cases, reps=reps)
    limit = stats.get("openssl dgst -sha256 x2")
    for name, s in stats.items():
        ratio = f"  {s.median / limit.median:5.2f}x hash limit" if limit else ""
        print(
            f"{root.name:<22} {name:<24} {s.median:7.3f} {s.min:7.3f} {s.max:7.3f}"
            f"  peak RSS {human(s.max_rss)}{ratio}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.before_after", description=__doc__)
    p.add_argument("rev", help="the 'before' commit")
    p.add_argument("--sizes", default="1G", help="comma-separated model sizes (default 1G)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--data-dir", type=Path, default=HERE / "data")
    args = p.parse_args(argv)
    sha, before = extract(args.rev, args.data_dir)
    keys = ensure_keys(args.data_dir)
    tiny = ensure_install(args.data_dir, keys).bundle
    print(f"verify, {args.reps} interleaved runs each (median / min / max seconds)")
    for size in [parse_size(x) for x in args.sizes.split(",")]:
        model = ensure_model(args.data_dir, size)
        if not (model.root / "release.dsse.json").is_file():
            run_process(
                [sys.executable, "-c", _ENTRY, str(REPO), "sign", str(model.root), "--key",
                 str(keys.private)]
            )  # fmt: skip
        compare(sha, before, model.root, list(model.files), keys, args.reps)
    compare(sha, before, tiny, [], keys, args.reps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
