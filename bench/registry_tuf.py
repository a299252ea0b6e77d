"""``python -m bench.registry_tuf``: a TUF-published registry of many releases over slow HTTP.

Builds a registry of ``--releases`` signed envelopes (one Ed25519 key signs
them all; each is a small but schema-valid release), publishes it as a TUF
repository (``registry init``'s library calls), serves it from a separate
process on 127.0.0.1 that answers every request after ``--delay-ms``
(an ordinary internet round trip), and times whole ``sonic-registry registry
list`` processes, as a user runs them:

1. a fresh client with only root.json (empty cache);
2. the same client again, registry unchanged;
3. after one new release is published (``registry add --online-key``).

The unchanged case is run ``--reps`` times (median reported, all kept).

Each row gives wall time, the requests the server saw and the client's peak
RSS (GNU ``time -f %M``). ``--memory-sizes`` (default 1,000, 2,000 and 5,000)
repeats step 1 at other sizes to show peak memory against the number of
releases; the publisher grows the hashed bins with the registry, as
``registry publish`` does. Results go to
``bench/results/registry_tuf.json``; the targets print as PASS/FAIL lines.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLI = str(Path(sys.executable).with_name("sonic-registry"))
TIME = shutil.which("time") or "/usr/bin/time"
TARGETS = {"first_s": 10.0, "unchanged_s": 0.3, "one_new_requests": 5}


def _predicate(model: str, version: str) -> dict[str, Any]:
    comp = {"format": "safetensors", "interface": "sonic/v2", "training_step": 1}
    return {
        "channel": "official",
        "compatible_with": [],
        "components": {
            "unet": {**comp, "paths": ["unet.safetensors"]},
            "audio_encoder": {**comp, "paths": ["audio2token.safetensors"]},
        },
        "config": {},
        "config_digest": {"sha256": hashlib.sha256(b"{}").hexdigest()},
        "created": "2026-01-01T00:00:00Z",
        "data": {},
        "expires": "2036-01-01T00:00:00Z",
        "model": model,
        "params": {},
        "runtime": {},
        "serial": 1,
        "version": version,
    }


def _name(i: int) -> tuple[str, str]:
    return f"model-{i // 100}", f"1.{i % 100}.0"


def write_release(root: Path, key: Any, i: int) -> Path:
    """One signed release envelope at its registry path (no model files needed)."""
    from sonic_registry.bundle import PREDICATE_TYPE, STATEMENT_TYPE
    from sonic_registry.canonical import canonical_bytes
    from sonic_registry.signing import Envelope

    model, version = _name(i)
    subjects = [
        {
            "name": name,
            "digest": {"sha256": hashlib.sha256(f"{i}/{name}".encode()).hexdigest()},
            "annotations": {"size": 1000 + i},
        }
        for name in ("audio2token.safetensors", "unet.safetensors")
    ]
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": subjects,
        "predicateType": PREDICATE_TYPE,
        "predicate": _predicate(model, version),
    }
    envelope = Envelope(payload=canonical_bytes(statement)).signed_by(key)
    path = root / "releases" / model / version / "1.dsse.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(envelope.to_json())
    return path


def build(work: Path, releases: int) -> dict[str, Any]:
    """Signed releases, trust store, index, TUF metadata; returns paths and build times."""
    from sonic_registry.registry import Registry
    from sonic_registry.registry.tuf_repo import init_repository, publish
    from sonic_registry.signing import generate_key, save_private_key
    from sonic_registry.trust import TrustStore

    reg = work / "site" / "reg"
    key, root_key, online_key = generate_key(), generate_key(), generate_key()
    save_private_key(key, work / "release.key", None)
    save_private_key(online_key, work / "online.key", None)
    trust = TrustStore().with_key(key.public, ["official"], name="bench")
    trust.save(work / "trust.json")
    t0 = time.perf_counter()
    for i in range(releases):
        write_release(reg, key, i)
    t1 = time.perf_counter()
    with Registry(reg, trust) as registry:
        registry.rebuild_index()
    t2 = time.perf_counter()
    init_repository(reg, root_key, online_key)  # 32 bins; publish adds bins as needed
    publish(reg, online_key)
    t3 = time.perf_counter()
    shutil.copy(reg / "metadata" / "1.root.json", work / "root.json")
    return {
        "registry": reg,
        "sign_s": t1 - t0,
        "index_s": t2 - t1,
        "tuf_publish_s": t3 - t2,
        "key": key,
    }


# -- the slow static server (its own process) ---------------------------------------


def serve(directory: str, delay_ms: float, port_file: str) -> None:
    """Serve ``directory`` on 127.0.0.1, each request answered after ``delay_ms``."""
    counter = {"n": 0}
    lock = threading.Lock()

    class Handler(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=directory, **kwargs)

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            if self.path == "/__requests":
                body = str(counter["n"]).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            with lock:
                counter["n"] += 1
            time.sleep(delay_ms / 1000)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


class SlowServer:
    def __init__(self, directory: Path, delay_ms: float) -> None:
        port_file = Path(tempfile.mkstemp()[1])
        port_file.unlink()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.registry_tuf", "serve", str(directory),
             str(delay_ms), str(port_file)],
            cwd=HERE.parent,
        )  # fmt: skip
        for _ in range(400):
            if port_file.exists() and port_file.read_text():
                break
            time.sleep(0.025)
        self.url = f"http://127.0.0.1:{port_file.read_text()}/"

    def requests(self) -> int:
        import urllib.request

        with urllib.request.urlopen(self.url + "__requests", timeout=10) as resp:
            return int(resp.read())

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def timed_list(server: SlowServer, work: Path, cache: Path, *, pin: bool) -> dict[str, Any]:
    """One whole ``registry list`` process: wall seconds, requests, peak RSS, exit code."""
    argv = [CLI, "registry", "list", "--registry", server.url + "reg/"]
    argv += ["--trust", str(work / "trust.json")]
    if pin:
        argv += ["--registry-root", str(work / "root.json")]
    env = {**os.environ, "SONIC_REGISTRY_CACHE": str(cache)}
    before = server.requests()
    start = time.perf_counter()
    proc = subprocess.run([TIME, "-f", "%M", *argv], env=env, capture_output=True)
    wall = time.perf_counter() - start
    err = proc.stderr.decode().strip().splitlines()
    return {
        "seconds": round(wall, 3),
        "requests": server.requests() - before,
        "peak_rss_mib": round(int(err[-1]) / 1024, 1) if err and err[-1].isdigit() else None,
        "exit_code": proc.returncode,
        "releases_listed": proc.stdout.count(b"\n"),
        "stderr": err[:-1][:3],
    }


def one_new_release(work: Path, reg: Path, key: Any, index: int) -> float:
    """Publish one more release the documented way: registry add --online-key."""
    path = write_release(work / "incoming", key, index)
    start = time.perf_counter()
    subprocess.run(
        [CLI, "registry", "add", str(path), "--registry", str(reg), "--trust",
         str(work / "trust.json"), "--no-record-serial", "--online-key", str(work / "online.key")],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - start


def median_of(reps: int, measure: Any) -> dict[str, Any]:
    """The run with the median wall time out of ``reps`` (all times kept in ``runs_s``)."""
    runs = sorted((measure() for _ in range(reps)), key=lambda r: r["seconds"])
    return {**runs[len(runs) // 2], "runs_s": [r["seconds"] for r in runs]}


def run(releases: int, delay_ms: float, memory_sizes: list[int], reps: int = 5) -> dict[str, Any]:
    out: dict[str, Any] = {"releases": releases, "delay_ms": delay_ms, "reps": reps}
    with tempfile.TemporaryDirectory(prefix="sonic-tuf-bench-") as tmp:
        work = Path(tmp)
        built = build(work, releases)
        reg = built.pop("registry")
        key = built.pop("key")
        out["build"] = {k: round(v, 2) for k, v in built.items()}
        server = SlowServer(work / "site", delay_ms)
        try:
            cache = work / "cache"
            out["first"] = timed_list(server, work, cache, pin=True)
            out["unchanged"] = median_of(reps, lambda: timed_list(server, work, cache, pin=False))
            out["publish_one_s"] = round(one_new_release(work, reg, key, releases), 2)
            out["one_new"] = timed_list(server, work, cache, pin=False)
            out["unchanged_after"] = median_of(
                reps, lambda: timed_list(server, work, cache, pin=False)
            )
        finally:
            server.close()
    out["memory"] = []
    for size in memory_sizes:
        with tempfile.TemporaryDirectory(prefix="sonic-tuf-bench-") as tmp:
            work = Path(tmp)
            build(work, size)
            server = SlowServer(work / "site", delay_ms)
            try:
                row = timed_list(server, work, work / "cache", pin=True)
            finally:
                server.close()
            out["memory"].append({"releases": size, **row})
    return out


def verdicts(result: dict[str, Any]) -> list[str]:
    first, same, new = result["first"], result["unchanged"], result["one_new"]
    rows = [
        ("first list, empty cache", first["seconds"], TARGETS["first_s"], "s"),
        ("unchanged registry", same["seconds"], TARGETS["unchanged_s"], "s"),
        ("after one new release", new["requests"], TARGETS["one_new_requests"], " requests"),
    ]
    lines = [
        f"{'PASS' if value <= limit else 'FAIL'} {name}: {value}{unit} (target <= {limit}{unit})"
        for name, value, limit, unit in rows
    ]
    sizes = sorted(
        [(m["releases"], m["peak_rss_mib"]) for m in result["memory"]]
        + [(result["releases"], first["peak_rss_mib"])]
    )
    if len(sizes) > 1 and all(rss is not None for _, rss in sizes):
        (n0, r0), (n1, r1) = sizes[0], sizes[-1]
        per = (r1 - r0) * 1024 / (n1 - n0) if n1 > n0 else 0.0
        shown = ", ".join(f"{n:,}: {rss} MiB" for n, rss in sizes)
        lines.append(f"INFO peak RSS of a first run: {shown} ({per:.2f} KiB per release)")
    return lines


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        serve(args[1], float(args[2]), args[3])
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.registry_tuf", description=__doc__)
    p.add_argument("--releases", type=int, default=10_000)
    p.add_argument("--delay-ms", type=float, default=50.0)
    p.add_argument("--reps", type=int, default=5, help="runs of the unchanged case (median)")
    p.add_argument(
        "--memory-sizes",
        default="1000,2000,5000",
        help="comma-separated extra sizes for the peak-RSS rows ('' for none)",
    )
    p.add_argument("--out", type=Path, default=HERE / "results" / "registry_tuf.json")
    ns = p.parse_args(args)
    sizes = [int(s) for s in ns.memory_sizes.split(",") if s]
    result = run(ns.releases, ns.delay_ms, sizes, ns.reps)
    result["verdicts"] = verdicts(result)
    from sonic_registry.fileio import atomic_write_text

    ns.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(ns.out, json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "verdicts"}, indent=2))
    for line in result["verdicts"]:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
