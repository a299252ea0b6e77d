"""The pre-commit hook on an unchanged model repo: warm cache vs a full re-hash.

``python -m bench.hook_bench [--size 2G] [--reps 5]`` prints a table;
``run(size_bytes)`` returns the same numbers for the suite (``bench/cases.py``).

The repo is a real git work tree whose bundle is the suite's model (hard links,
so no second copy of the bytes), signed with the suite's key and trusted
through a ``trust.json`` in the repo, exactly as a model repository would
configure the hook. Every case is a whole process (interpreter start included),
as pre-commit runs it:

* ``hook, warm cache``: ``sonic-registry-hook verify`` after one run filled the
  cache: what every commit that leaves the weights alone costs;
* ``hook, no cache``: the same hook re-hashing every byte (``--no-cache``);
* ``sonic-registry verify``: the full verifier, for reference;
* ``python -c pass``: the interpreter start both pay.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .data import CLI, ensure_keys, ensure_model, human, parse_size
from .timing import Stats, interleave, run_process

__all__ = ["HOOK", "prepare_repo", "run"]

HERE = Path(__file__).resolve().parent
HOOK = str(Path(sys.executable).with_name("sonic-registry-hook"))
RACY_SECONDS = 2.0  # the stat cache keeps no entry for files younger than this


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def prepare_repo(data_dir: Path, size: int) -> Path:
    """A git work tree with one signed bundle of ``size`` bytes and a trust.json."""
    from sonic_registry.signing import load_public_key
    from sonic_registry.trust import TrustStore

    model = ensure_model(data_dir, size)
    keys = ensure_keys(data_dir)
    repo = data_dir / f"hook-repo-{size}"
    if repo.exists():
        shutil.rmtree(repo)
    bundle = repo / "checkpoints" / "Sonic"
    for f in model.files:
        _link_or_copy(f, bundle / f.name)
    shutil.copyfile(model.root / "release.toml", bundle / "release.toml")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(
        [CLI, "sign", str(bundle), "--key", str(keys.private)], check=True, capture_output=True
    )
    TrustStore().with_key(load_public_key(keys.public), ["official"], name="bench").save(
        repo / "trust.json"
    )
    return repo


def run(size_bytes: int, *, data_dir: Path = HERE / "data", reps: int = 5) -> dict[str, Stats]:
    """Median/min/max seconds per case on a ``size_bytes`` model repo."""
    data_dir.mkdir(parents=True, exist_ok=True)
    repo = prepare_repo(data_dir, size_bytes)
    hook = [HOOK, "verify", "--trust", "trust.json"]
    cwd = str(repo)
    # Files written in the last RACY_SECONDS are never cached (a same-tick
    # rewrite would look unchanged), so wait that long, then fill the cache.
    time.sleep(RACY_SECONDS + 0.1)
    run_process(hook, cwd=cwd)
    if not (repo / ".git" / "sonic-registry" / "verdicts.json").is_file():
        raise RuntimeError("the hook did not record a verdict; the warm case would not be warm")
    cases = {
        "hook, warm cache (unchanged repo)": lambda: run_process(hook, cwd=cwd),
        "hook, no cache (full re-hash)": lambda: run_process([*hook, "--no-cache"], cwd=cwd),
        "sonic-registry verify (full re-hash)": lambda: run_process(
            [CLI, "verify", "checkpoints/Sonic", "--trust", "trust.json", "--no-record"], cwd=cwd
        ),
        "python -c pass (interpreter start)": lambda: run_process([sys.executable, "-c", "pass"]),
    }
    return interleave(cases, reps=reps, warmup=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hook_bench", description=__doc__)
    p.add_argument("--size", default="2G", help="model size (default 2G)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--data-dir", type=Path, default=HERE / "data")
    args = p.parse_args(argv)
    size = parse_size(args.size)
    results = run(size, data_dir=args.data_dir, reps=args.reps)
    warm = results["hook, warm cache (unchanged repo)"]
    full = results["hook, no cache (full re-hash)"]
    print(f"pre-commit hook on an unchanged {human(size)} model repo ({args.reps} runs, seconds)")
    print(f"{'case':<40} {'median':>8} {'min':>8} {'max':>8}")
    for name, s in results.items():
        print(f"{name:<40} {s.median:>8.3f} {s.min:>8.3f} {s.max:>8.3f}")
    print(
        f"warm cache {warm.median:.3f} s vs full re-hash {full.median:.3f} s "
        f"({full.median / warm.median:.0f}x faster); target < 0.25 s: "
        f"{'met' if warm.median < 0.25 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
