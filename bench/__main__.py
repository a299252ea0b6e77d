"""``python -m bench [--size 1G] [--reps 5] [--growth]``: run the suite, write the report.

Writes ``bench/results/latest.json``, ``bench/results/throughput.png`` and the
generated block of ``BENCHMARKS.md``, and prints one PASS/FAIL line per target.
Exit status 0 whether targets pass or not (a benchmark is a measurement, not a
gate), 2 when the harness itself failed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from . import cases
from .data import (
    SINGLE,
    ensure_install,
    ensure_keys,
    ensure_model,
    ensure_workflow,
    human,
    parse_size,
)
from .machine import describe
from .plot import plot_throughput
from .report import check_targets, render_markdown, splice_markdown, write_json

HERE = Path(__file__).resolve().parent
GROWTH = ("256M", "1G", "4G")
PLOTTED = (
    "sonic-registry verify",
    "sonic-registry verify (1 thread)",
    "openssl dgst -sha256 x2",
    "sha256sum",
    "model_signing verify",
)


def compile_bytecode() -> None:
    """Byte-compile the package once, as ``pip install`` does, so no timed run compiles it."""
    import compileall

    root = HERE.parent
    for pkg in ("sonic_registry", "reference_runtime"):
        if (root / pkg).is_dir():
            compileall.compile_dir(str(root / pkg), quiet=2)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--size", default="1G", help="model size for the main tables (default 1G)")
    p.add_argument("--reps", type=int, default=5, help="interleaved repetitions (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="discarded warm-up runs (default 1)")
    p.add_argument(
        "--growth",
        action="store_true",
        help=f"also verify at {', '.join(GROWTH)} (throughput vs size, memory vs size)",
    )
    p.add_argument("--sizes", help="comma-separated growth sizes instead of the default")
    p.add_argument("--data-dir", type=Path, default=HERE / "data", help="generated inputs")
    p.add_argument("--out", type=Path, default=HERE / "results", help="JSON and PNG go here")
    p.add_argument(
        "--markdown",
        type=Path,
        default=HERE.parent / "BENCHMARKS.md",
        help="Markdown file whose generated block is replaced",
    )
    p.add_argument(
        "--only",
        help="comma-separated groups: verify,single,sign,startup,load,resolver,identify,hook",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    size = parse_size(args.size)
    sizes = [parse_size(s) for s in args.sizes.split(",")] if args.sizes else []
    if args.growth and not sizes:
        sizes = [parse_size(s) for s in GROWTH]
    sizes = sorted(set(sizes) | {size})
    only = set(args.only.split(",")) if args.only else None

    def wanted(name: str) -> bool:
        return only is None or name in only

    data = args.data_dir
    data.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    doc: dict[str, object] = {
        "schema": 1,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": describe(),
        "settings": {
            "command": "python -m bench " + " ".join(map(shlex.quote, argv or sys.argv[1:])),
            "size_bytes": size,
            "sizes_bytes": sizes,
            "reps": args.reps,
            "warmup": args.warmup,
            "page_cache": "warm: every file read once before each group, plus warm-up runs",
            "bytecode": "compiled before the run; children run without PYTHONDONTWRITEBYTECODE",
        },
    }
    compile_bytecode()
    keys = ensure_keys(data)
    groups: list[cases.Group] = []

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", file=sys.stderr, flush=True)

    models = {}
    for s in sizes:
        if s != size and not wanted("verify"):
            continue
        log(f"data: model of {human(s)}")
        models[s] = ensure_model(data, s)
    model = models[size]

    def attempt(name: str, title: str, build: Callable[[], cases.Group]) -> None:
        """Run one group; a harness or tool failure becomes a 'not measured' row."""
        log(title)
        try:
            groups.append(build())
        except Exception as exc:
            failed = cases.Group(name, title)
            failed.results["(group)"] = cases.NotMeasured(f"failed: {exc}")
            groups.append(failed)
            log(f"{name}: not measured: {exc}")

    if wanted("verify"):
        for s in sizes:
            sig = data / f"model-{s}.sig"
            attempt(
                f"verify-{s}",
                f"verify {human(s)}",
                lambda m=models[s], sig=sig: cases.growth_group(  # type: ignore[misc]
                    m, keys, sig, args.reps, args.warmup
                ),
            )
    if wanted("single"):
        single = ensure_model(data, size, SINGLE)
        attempt(
            f"verify-single-{size}",
            f"verify one {human(size)} file",
            lambda: cases.single_file_group(
                single, keys, data / f"model-single-{size}.sig", args.reps, args.warmup
            ),
        )
    if wanted("sign"):
        sig = data / f"model-{size}.sign.sig"
        attempt("sign", "sign", lambda: cases.sign_group(model, keys, sig, args.reps, args.warmup))
    if wanted("hook"):
        hook_size = 2 << 30 if size >= 1 << 30 else size  # DESIGN.md: 2 GiB
        attempt("hook", "hook", lambda: cases.hook_group(hook_size, data, args.reps))
        if args.growth:  # the warm-cache time must not grow with the model
            small = min(sizes)
            attempt(
                "hook-small",
                "hook (small repo)",
                lambda: cases.hook_group(small, data, args.reps, name="hook-small"),
            )
    if wanted("load"):
        attempt("load", "load", lambda: cases.load_group(model, args.reps, args.warmup))
    if wanted("startup"):
        attempt("startup", "startup", lambda: cases.startup_group(args.reps * 4, args.warmup))
    if wanted("resolver"):
        attempt(
            "resolver",
            "resolver",
            lambda: cases.resolver_group(
                ensure_workflow(data), ensure_install(data, keys), keys, max(20, args.reps * 20)
            ),
        )
    if wanted("identify"):
        attempt(
            "identify",
            "identify",
            lambda: cases.identify_group(model, keys, data, args.reps, args.warmup),
        )

    by_name = {g.name: g for g in groups}
    targets = check_targets(by_name, size, sizes)
    series: dict[str, list[tuple[int, float]]] = {}
    for s in sizes:
        g = by_name.get(f"verify-{s}")
        for case in PLOTTED:
            st = g.stats(case) if g else None
            if st is not None:
                series.setdefault(case, []).append((s, s / st.median / 1e9))
    args.out.mkdir(parents=True, exist_ok=True)
    png = args.out / "throughput.png"
    plot_throughput(png, series, "Full verify / hash throughput vs model size (median)")
    try:
        rel_png = png.resolve().relative_to(args.markdown.resolve().parent)
    except ValueError:
        rel_png = png.resolve()
    doc["plot"] = str(rel_png)
    doc["groups"] = {g.name: g.to_dict() for g in groups}
    doc["targets"] = [t.to_dict() for t in targets]
    doc["duration_s"] = round(time.perf_counter() - started, 1)
    write_json(args.out / "latest.json", doc)
    splice_markdown(args.markdown, render_markdown(doc, groups, targets))
    for t in targets:
        print(t.line())
    log(f"wrote {args.out / 'latest.json'}, {png}, {args.markdown}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
