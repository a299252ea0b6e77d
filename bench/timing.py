"""Timing primitives: whole-process runs with per-child peak RSS, interleaved repetitions.

Peak RSS comes from GNU ``time`` (``%M``, itself ``wait4`` on the command) rather
than ``resource.getrusage(RUSAGE_CHILDREN)``, which reports the maximum over
*all* children ever reaped, so one large process would hide every later,
smaller one.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Sample", "Stats", "interleave", "run_process", "stats_of"]


@dataclass(frozen=True, slots=True)
class Sample:
    """One run: wall seconds, the child's peak RSS in bytes (0 in-process), its output."""

    seconds: float
    max_rss: int = 0
    stdout: str = ""


@dataclass(frozen=True)
class Stats:
    """Median and range of the repetitions of one case."""

    median: float
    min: float
    max: float
    reps: int
    max_rss: int = 0
    samples: tuple[float, ...] = field(default=())
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "median_s": self.median,
            "min_s": self.min,
            "max_s": self.max,
            "reps": self.reps,
            "max_rss_bytes": self.max_rss,
            "samples_s": list(self.samples),
            **({"extra": dict(self.extra)} if self.extra else {}),
        }


class CommandFailed(RuntimeError):
    """A benchmarked command exited non-zero: its numbers would be meaningless."""


#: GNU time execs the command from a tiny process, so the peak RSS it reports is the
#: command's own: a child forked straight from this (large) Python process would
#: inherit the parent's RSS high-water mark into its ``ru_maxrss`` at exec.
GNU_TIME = "/usr/bin/time"
_RSS_TAG = "BENCH_MAXRSS_KB="


def run_process(
    argv: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: str | None = None
) -> Sample:
    """Run ``argv`` to completion; wall time from spawn to reap, and its own peak RSS."""
    full_env = {**os.environ, **(env or {})}
    # Measure what an installed package costs: pip compiles bytecode at install
    # time, so children may read and write __pycache__ (a dev shell often sets
    # PYTHONDONTWRITEBYTECODE, which recompiles every module on every start).
    full_env.pop("PYTHONDONTWRITEBYTECODE", None)
    wrapped = os.access(GNU_TIME, os.X_OK)
    cmd = [GNU_TIME, "-f", _RSS_TAG + "%M", *argv] if wrapped else list(argv)
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=full_env,
        cwd=cwd,
    )
    out, err = _drain(proc)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        lines = [x for x in (err or out).strip().splitlines() if not x.startswith(_RSS_TAG)]
        tail = lines[-3:]
        shown = " ".join("<script>" if "\n" in a else a for a in argv)
        raise CommandFailed(f"{shown} exited {proc.returncode}: {' | '.join(tail)}")
    rss_kib = usage.ru_maxrss  # KiB on Linux; an upper bound when not wrapped
    if wrapped:
        tagged = [line for line in err.splitlines() if line.startswith(_RSS_TAG)]
        if tagged:
            rss_kib = int(tagged[-1].removeprefix(_RSS_TAG))
    return Sample(elapsed, rss_kib * 1024, out)


def _drain(proc: subprocess.Popen[bytes]) -> tuple[str, str]:
    """Read both pipes to EOF without reaping the child (wait4 must reap it)."""
    import selectors

    assert proc.stdout is not None and proc.stderr is not None
    chunks: dict[int, list[bytes]] = {proc.stdout.fileno(): [], proc.stderr.fileno(): []}
    sel = selectors.DefaultSelector()
    for pipe in (proc.stdout, proc.stderr):
        sel.register(pipe, selectors.EVENT_READ)
    while sel.get_map():
        for key, _ in sel.select():
            data = os.read(key.fd, 1 << 16)
            if not data:
                sel.unregister(key.fileobj)
                continue
            chunks[key.fd].append(data)
    out = b"".join(chunks[proc.stdout.fileno()]).decode(errors="replace")
    err = b"".join(chunks[proc.stderr.fileno()]).decode(errors="replace")
    proc.stdout.close()
    proc.stderr.close()
    return out, err


def stats_of(samples: Sequence[Sample], extra: Mapping[str, Any] | None = None) -> Stats:
    times = [s.seconds for s in samples]
    return Stats(
        median=statistics.median(times),
        min=min(times),
        max=max(times),
        reps=len(times),
        max_rss=max(s.max_rss for s in samples),
        samples=tuple(times),
        extra=dict(extra or {}),
    )


def interleave(
    cases: Mapping[str, Callable[[], Sample]], *, reps: int, warmup: int = 1
) -> dict[str, Stats]:
    """Run every case ``warmup`` times (discarded), then A B C A B C ... ``reps`` times.

    Interleaving spreads slow phases of a noisy machine over all cases instead
    of charging them to whichever case happened to run then.
    """
    for _ in range(warmup):
        for fn in cases.values():
            fn()
    samples: dict[str, list[Sample]] = {name: [] for name in cases}
    for _ in range(reps):
        for name, fn in cases.items():
            samples[name].append(fn())
    return {name: stats_of(s) for name, s in samples.items()}
