"""The benchmark groups. Each returns a ``Group``: cases timed interleaved, or why not.

A case whose tool is missing (an optional module or a binary not installed)
is recorded as "not measured: <why>", never as a number.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .data import CLI, Install, Keys, Model, human
from .timing import Sample, Stats, interleave, run_process, stats_of

__all__ = ["Group", "NotMeasured"]

PY = sys.executable
MODEL_SIGNING = str(Path(sys.executable).with_name("model_signing"))


@dataclass(frozen=True)
class NotMeasured:
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"not_measured": self.why}


@dataclass
class Group:
    """One table of the report: cases measured together, and their common size."""

    name: str
    title: str
    size: int | None = None
    results: dict[str, Stats | NotMeasured] = field(default_factory=dict)
    note: str = ""

    def stats(self, case: str) -> Stats | None:
        r = self.results.get(case)
        return r if isinstance(r, Stats) else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "size_bytes": self.size,
            "note": self.note,
            "cases": {k: v.to_dict() for k, v in self.results.items()},
        }


def warm_cache(paths: list[Path]) -> None:
    """Read every file once so every tool starts from a warm page cache."""
    for p in paths:
        with p.open("rb") as fh:
            while fh.read(8 << 20):
                pass


def _proc(argv: list[str], env: Mapping[str, str] | None = None) -> Callable[[], Sample]:
    return lambda: run_process(argv, env=env)


def openssl_x2(files: tuple[Path, ...]) -> list[str]:
    """Two ``openssl dgst -sha256`` processes over balanced halves of the files."""
    ordered = sorted(files, key=lambda p: -p.stat().st_size)
    halves: list[list[Path]] = [[], []]
    loads = [0, 0]
    for p in ordered:  # greedy: biggest file to the least loaded process
        i = loads.index(min(loads))
        halves[i].append(p)
        loads[i] += p.stat().st_size
    jobs = [
        "openssl dgst -sha256 " + " ".join(shlex.quote(str(p)) for p in h) + " >/dev/null"
        for h in halves
        if h
    ]
    return ["sh", "-c", " & ".join(jobs) + " & wait"]


def verify_cases(model: Model, keys: Keys, sig: Path) -> dict[str, Callable[[], Sample]]:
    cases: dict[str, Callable[[], Sample]] = {}
    verify = [CLI, "verify", str(model.root), "--public-key", str(keys.public), "--no-record"]
    cases["sonic-registry verify"] = _proc(verify)
    cases["sonic-registry verify (1 thread)"] = _proc(verify, {"SONIC_REGISTRY_THREADS": "1"})
    if shutil.which("openssl"):
        cases["openssl dgst -sha256 x2"] = _proc(openssl_x2(model.files))
    if shutil.which("sha256sum"):
        cases["sha256sum"] = _proc(["sha256sum", *map(str, model.files)])
    if sig.is_file():
        cases["model_signing verify"] = _proc(
            [
                MODEL_SIGNING,
                "verify",
                "key",
                str(model.root),
                "--signature",
                str(sig),
                "--public_key",
                str(keys.public),
                "--ignore-paths",
                str(model.root / "release.dsse.json"),
            ]
        )
    return cases


def single_file_group(model: Model, keys: Keys, sig: Path, reps: int, warmup: int) -> Group:
    """One big file: the sharded verify uses both cores, per-file tools only one."""
    group = Group(
        f"verify-single-{model.size}",
        f"Verify one {human(model.size)} file (the UNet shipped as a single checkpoint)",
        model.size,
        note="`openssl dgst` and `sha256sum` cannot split one file over processes: one core.",
    )
    failed = prepare_signatures(model, keys, sig)
    warm_cache([*model.files])
    cases = verify_cases(model, keys, sig)
    cases.pop("openssl dgst -sha256 x2", None)
    if shutil.which("openssl"):
        cases["openssl dgst -sha256"] = _proc(
            ["openssl", "dgst", "-sha256", *map(str, model.files)]
        )
    group.results.update(interleave(cases, reps=reps, warmup=warmup))
    if failed is not None:
        group.results["model_signing verify"] = failed
    return group


def sign_model_signing(model: Model, keys: Keys, sig: Path) -> list[str]:
    return [
        MODEL_SIGNING,
        "sign",
        "key",
        str(model.root),
        "--private_key",
        str(keys.private),
        "--signature",
        str(sig),
        "--ignore-paths",
        str(model.root / "release.dsse.json"),
    ]


def prepare_signatures(model: Model, keys: Keys, sig: Path) -> NotMeasured | None:
    """Sign the model with both tools once, so every verify case has its input."""
    run_process([CLI, "sign", str(model.root), "--key", str(keys.private)])
    try:
        run_process(sign_model_signing(model, keys, sig))
    except Exception as exc:  # a peer failing must not sink the whole suite
        return NotMeasured(f"model_signing sign failed: {exc}")
    return None


def growth_group(model: Model, keys: Keys, sig: Path, reps: int, warmup: int) -> Group:
    group = Group(
        f"verify-{model.size}",
        f"Verify {human(model.size)} (full re-hash, {len(model.files)} weight files)",
        model.size,
    )
    failed = prepare_signatures(model, keys, sig)
    cases = verify_cases(model, keys, sig)
    warm = [*model.files]
    # BLAKE3 mode is one more case of the same interleave, so it compares
    # directly with the SHA-256 "sonic-registry verify" row above it.
    have_blake3 = importlib.util.find_spec("blake3") is not None
    if have_blake3:
        b3 = blake3_twin(model, keys)
        warm += b3.files
        cases["sonic-registry verify (BLAKE3)"] = _proc(
            [CLI, "verify", str(b3.root), "--public-key", str(keys.public), "--no-record"]
        )
    warm_cache(warm)
    group.results.update(interleave(cases, reps=reps, warmup=warmup))
    if failed is not None:
        group.results["model_signing verify"] = failed
    if not have_blake3:
        group.results["sonic-registry verify (BLAKE3)"] = NotMeasured("blake3 not installed")
    return group


def blake3_twin(model: Model, keys: Keys) -> Model:
    """The same weights (hard links, shared page cache) signed with ``sign --blake3``."""
    root = model.root.with_name(model.root.name + "-blake3")
    root.mkdir(exist_ok=True)
    for src in [*model.files, model.root / "release.toml"]:
        dst = root / src.name
        if not dst.exists():
            os.link(src, dst)
    run_process([CLI, "sign", "--blake3", str(root), "--key", str(keys.private)])
    return Model(root, model.size, tuple(root / p.name for p in model.files))


def sign_group(model: Model, keys: Keys, sig: Path, reps: int, warmup: int) -> Group:
    group = Group("sign", f"Sign {human(model.size)} (hash every file + signature)", model.size)
    cases: dict[str, Callable[[], Sample]] = {
        "sonic-registry sign": _proc([CLI, "sign", str(model.root), "--key", str(keys.private)]),
        "model_signing sign": _proc(sign_model_signing(model, keys, sig)),
    }
    if shutil.which("openssl"):
        cases["openssl dgst -sha256 x2"] = _proc(openssl_x2(model.files))
    warm_cache([*model.files])
    group.results.update(interleave(cases, reps=reps, warmup=warmup))
    return group


def startup_group(reps: int, warmup: int) -> Group:
    group = Group("startup", "Start-up: `sonic-registry --help` vs a bare interpreter")
    cases = {
        "python -c pass": _proc([PY, "-c", "pass"]),
        "sonic-registry --help": _proc([CLI, "--help"]),
    }
    group.results.update(interleave(cases, reps=reps, warmup=warmup))
    return group


# --- verified load ------------------------------------------------------------

_LOAD_SCRIPT = """
import json, sys, time
import torch, safetensors.torch
from sonic_registry.digest import FileDigest, hash_file
path, mode, sha, size = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
t = time.perf_counter()
if mode == "hash":
    hash_file(path)
elif mode == "plain":
    tensors = safetensors.torch.load_file(path)
elif mode == "touch":
    tensors = safetensors.torch.load_file(path)
    for tensor in tensors.values():
        tensor.sum()
elif mode == "verified":
    from sonic_registry.loader import load_file_verified
    tensors = load_file_verified(path, FileDigest(sha, size))
print(json.dumps({"seconds": time.perf_counter() - t}))
"""


def _in_script(mode: str, path: Path, sha: str, size: int) -> Callable[[], Sample]:
    def run() -> Sample:
        s = run_process([PY, "-c", _LOAD_SCRIPT, str(path), mode, sha, str(size)])
        return Sample(json.loads(s.stdout)["seconds"], s.max_rss, s.stdout)

    return run


def load_group(model: Model, reps: int, warmup: int) -> Group:
    path = model.biggest
    group = Group(
        "load",
        f"Load one {human(path.stat().st_size)} safetensors file (time inside the process; "
        "peak RSS of the whole process, torch imported in every case)",
        path.stat().st_size,
    )
    from sonic_registry.digest import hash_file

    d = hash_file(path)
    cases = {
        "import torch only (baseline)": _in_script("none", path, d.sha256, d.size),
        "hash-only (sha256)": _in_script("hash", path, d.sha256, d.size),
        "safetensors.torch.load_file": _in_script("plain", path, d.sha256, d.size),
        "load_file + touch every tensor (sum)": _in_script("touch", path, d.sha256, d.size),
    }
    cases["verified load"] = _in_script("verified", path, d.sha256, d.size)
    warm_cache([path])
    group.results.update(interleave(cases, reps=reps, warmup=warmup))
    return group


# --- resolver, identify, hook -------------------------------------------------


def _inproc(fn: Callable[[], object], reps: int) -> Stats:
    fn()  # warm-up: imports, caches
    samples = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        samples.append(Sample(time.perf_counter() - t))
    return stats_of(samples)


def resolver_group(workflow: Path, install: Install, keys: Keys, reps: int) -> Group:
    group = Group(
        "resolver",
        "Resolver on a 1,000-node ComfyUI workflow (in-process; registry of one signed"
        " release, 4 small weight files hashed on every call)",
    )
    from sonic_registry.workflows import load_graph

    group.results["parse workflow (load_graph)"] = _inproc(lambda: load_graph(workflow), reps)
    from sonic_registry.registry import Registry
    from sonic_registry.resolver import resolve_graph
    from sonic_registry.signing import load_public_key
    from sonic_registry.trust import TrustStore

    registry = Registry(
        install.registry, TrustStore.from_public_keys([load_public_key(keys.public)])
    )
    group.results["resolve"] = _inproc(
        lambda: resolve_graph(workflow, registry, install.models, runtime_version="1.3.0"), reps
    )
    return group


def identify_group(model: Model, keys: Keys, data_dir: Path, reps: int, warmup: int) -> Group:
    path = model.biggest
    group = Group(
        "identify",
        f"`identify` on an unchanged {human(path.stat().st_size)} file (whole process)",
        path.stat().st_size,
    )
    registry = data_dir / f"registry-{model.size}"
    cache = data_dir / f"identify-{model.size}.cache.json"
    run_process(
        [
            CLI,
            "registry",
            "add",
            "--registry",
            str(registry),
            "--public-key",
            str(keys.public),
            "--no-record-serial",
            str(model.root / "release.dsse.json"),
        ]
    )
    ident = [CLI, "identify", "--registry", str(registry), "--public-key", str(keys.public)]
    cases = {
        "sha256sum": _proc(["sha256sum", str(path)]),
        "sonic-registry identify (warm stat cache)": _proc(
            [*ident, "--stat-cache", str(cache), str(path)]
        ),
        "sonic-registry identify (no cache)": _proc([*ident, str(path)]),
    }
    warm_cache([path])
    # The stat cache keeps no entry for a file written in the last 2 s (racy
    # clean); the model is older than that, so one run fills the cache.
    run_process([*ident, "--stat-cache", str(cache), str(path)])
    group.results.update(interleave(cases, reps=reps, warmup=warmup))
    return group


def hook_group(size: int, data_dir: Path, reps: int, name: str = "hook") -> Group:
    group = Group(
        name,
        f"pre-commit hook on an unchanged {human(size)} model repo (whole process)",
        size,
    )
    from . import hook_bench

    group.results.update(hook_bench.run(size, data_dir=data_dir, reps=reps))
    return group
