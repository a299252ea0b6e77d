"""What the ComfyUI guard adds to a queued Sonic prompt when no file changed (target < 30 ms).

``python -m bench.comfyui_guard [--reps 30] [--comfyui-dir DIR [--comfyui-python PY]]``
prints a table, one PASS/FAIL line, and writes ``bench/results/comfyui_guard.json``.

* **In process** (always): ComfyUI's ``execution.validate_prompt`` replaced by a
  no-op, called bare and through the pack's hook (:class:`~sonic_registry.
  comfyui_pack.glue.Pack`), interleaved on one event loop; the difference is
  the guard's whole cost: the hop to the pack's thread, parsing and resolving
  the prompt, a ``stat`` per weight file against the digest cache, the registry
  lookups, the parameter and duration checks (the WAV header is read) and the
  verdict event. The number of files hashed during the timed runs is reported:
  it must be 0.
* **Real server** (``--comfyui-dir``): two ComfyUI servers from the same
  checkout, one with the pack and one without, both with the ComfyUI_Sonic
  stand-in; ComfyUI_Sonic's ``example.json`` is POSTed to each in turn and
  the wall time of ``POST /prompt`` (HTTP, ComfyUI's validation and, with the
  pack, the guard) compared. Each prompt is run to completion before the next
  POST (not timed), so execution never competes with the measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import time
import wave
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .data import Keys, ensure_install, ensure_keys, ensure_workflow
from .timing import Sample, Stats, interleave

HERE = Path(__file__).resolve().parent
TARGET_S = 0.030
RACY_SECONDS = 2.0


def _trust(data_dir: Path, keys: Keys) -> Path:
    from sonic_registry.signing import load_public_key
    from sonic_registry.trust import TrustStore

    path = data_dir / "comfyui" / "trust.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    store = TrustStore().with_key(load_public_key(keys.public), ["official"], name="bench")
    store.save(path)
    return path


def _wav(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * int(seconds * 16000))


def in_process(data_dir: Path, reps: int) -> tuple[dict[str, Stats], int, dict[str, str]]:
    """(bare vs guarded validation, files hashed while timed, the guard's badge statuses)."""
    import sonic_registry.digest as digest
    from sonic_registry.comfyui_pack.glue import Pack

    keys = ensure_keys(data_dir)
    inst = ensure_install(data_dir, keys)
    prompt = json.loads(ensure_workflow(data_dir, nodes=7).read_text())
    base = data_dir / "comfyui" / "inproc"
    if base.exists():
        shutil.rmtree(base)
    user = base / "user"
    (user / "sonic_registry").mkdir(parents=True)
    (user / "sonic_registry" / "config.toml").write_text(
        f'registry = "{inst.registry}"\ntrust = "{_trust(data_dir, keys)}"\n'
    )
    _wav(base / "input" / "speech0.wav", 10.0)

    async def validate(prompt_id: Any, prompt: Any, partial: Any) -> Any:
        return (True, None, ["7"], {})

    execution = SimpleNamespace(validate_prompt=validate)
    server = SimpleNamespace(
        send_sync=lambda event, data, sid=None: None,
        add_on_prompt_handler=lambda handler: None,
        prompt_queue=SimpleNamespace(task_done=lambda *a, **k: None, currently_running={}),
        last_prompt_id=None,
    )
    folders = SimpleNamespace(
        models_dir=str(inst.models),
        get_user_directory=lambda: str(user),
        get_input_directory=lambda: str(base / "input"),
        get_output_directory=lambda: str(base / "output"),
    )
    pack = Pack(server, execution, folders, SimpleNamespace(NODE_CLASS_MAPPINGS={}))
    pack.install()
    guarded = execution.validate_prompt
    loop = asyncio.new_event_loop()
    first = loop.run_until_complete(guarded("warm", prompt, None))
    if not first[0]:
        raise RuntimeError(f"the benchmark prompt was refused: {first[1]}")
    youngest = max(p.stat().st_ctime for p in inst.models.rglob("*") if p.is_file())
    time.sleep(max(0.0, youngest + RACY_SECONDS + 0.1 - time.time()))
    loop.run_until_complete(guarded("cache", prompt, None))  # now the digests are cached
    checked = dict(pack.approved["cache"].statuses)

    hashed = 0
    real_hash_files = digest.hash_files

    def counting(paths: Any, *a: Any, **k: Any) -> Any:
        nonlocal hashed
        hashed += len(paths)
        return real_hash_files(paths, *a, **k)

    def timed(fn: Callable[[], Any]) -> Callable[[], Sample]:
        def run() -> Sample:
            t = time.perf_counter()
            loop.run_until_complete(fn())
            return Sample(time.perf_counter() - t)

        return run

    digest.hash_files = counting  # type: ignore[assignment]
    try:
        stats = interleave(
            {
                "validate_prompt without the pack": timed(lambda: validate("p", prompt, None)),
                "validate_prompt with the guard": timed(lambda: guarded("p", prompt, None)),
            },
            reps=reps,
            warmup=2,
        )
    finally:
        digest.hash_files = real_hash_files  # type: ignore[assignment]
        pack.executor.shutdown()
        loop.close()
    return stats, hashed, checked


def real_server(data_dir: Path, checkout: Path, python: str, reps: int) -> dict[str, Stats]:
    """POST /prompt wall time on two real servers, with and without the pack."""
    from .comfyui_server import (
        install_command,
        layout,
        server_env,
        start_server,
        ui_to_api,
        widget_names_from_object_info,
    )

    keys = ensure_keys(data_dir)
    inst = ensure_install(data_dir, keys)
    trust = _trust(data_dir, keys)
    root = data_dir / "comfyui" / "servers"
    if root.exists():
        shutil.rmtree(root)
    example = HERE.parent / "tests/data/workflows/smthemex-ComfyUI_Sonic/example.json"
    servers = {}
    try:
        for name, with_pack in (("without the pack", False), ("with the pack", True)):
            base = layout(checkout, root / name.replace(" ", "-"))
            shutil.copytree(inst.models, base / "models", dirs_exist_ok=True)
            shutil.copyfile(
                base / "models/checkpoints/video/svd_xt_1_1.safetensors",
                base / "models/checkpoints/svd_xt_1_1.safetensors",
            )
            from PIL import Image

            Image.new("RGB", (64, 64)).save(base / "input" / "4.jpg")
            if with_pack:
                subprocess.run(
                    [*install_command(python), "comfyui", "install", "--comfyui-dir", str(base)],
                    env=server_env(),
                    check=True,
                    capture_output=True,
                )
                config = base / "user" / "sonic_registry" / "config.toml"
                config.parent.mkdir(parents=True)
                config.write_text(f'registry = "{inst.registry}"\ntrust = "{trust}"\n')
            servers[name] = start_server(base, python, root / f"{base.name}.log")
        any_server = next(iter(servers.values()))
        names = widget_names_from_object_info(any_server.get("/object_info"))
        prompt = ui_to_api(json.loads(example.read_text("utf-8")), names)
        for srv in servers.values():
            _wav(srv.base / "input" / prompt["19"]["inputs"]["audio"], 3.0)
        time.sleep(RACY_SECONDS + 0.1)  # files old enough for the digest cache

        def post(name: str) -> Callable[[], Sample]:
            def run() -> Sample:
                srv = servers[name]
                t = time.perf_counter()
                status, body = srv.post_prompt(prompt)
                elapsed = time.perf_counter() - t
                if status != 200:
                    raise RuntimeError(f"{name}: POST /prompt answered {status}: {body}")
                srv.wait_done(body["prompt_id"])
                return Sample(elapsed)

            return run

        return interleave({name: post(name) for name in servers}, reps=reps, warmup=2)
    finally:
        for srv in servers.values():
            srv.stop()


def _line(name: str, s: Stats) -> str:
    spread = f"(min {s.min * 1e3:.2f}, max {s.max * 1e3:.2f})"
    return f"  {name:<40} median {s.median * 1e3:8.2f} ms  {spread}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.comfyui_guard", description=__doc__)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--data-dir", type=Path, default=HERE / "data")
    p.add_argument("--out", type=Path, default=HERE / "results" / "comfyui_guard.json")
    p.add_argument("--comfyui-dir", type=Path, help="a ComfyUI checkout: also time a real server")
    p.add_argument("--comfyui-python", default=None, help="the Python that runs ComfyUI")
    args = p.parse_args(argv)
    doc: dict[str, Any] = {"target_s": TARGET_S}
    stats, hashed, checked = in_process(args.data_dir, args.reps)
    bare, guarded = stats.values()
    overhead = guarded.median - bare.median
    print(f"in process, {args.reps} interleaved reps, files unchanged:")
    for name, s in stats.items():
        print(_line(name, s))
    print(f"  guard overhead {overhead * 1e3:.2f} ms; files hashed during the timed runs: {hashed}")
    print(f"  the guard's verdict on the loader nodes: {checked}")
    doc["in_process"] = {
        "cases": {k: v.to_dict() for k, v in stats.items()},
        "overhead_s": overhead,
        "files_hashed": hashed,
        "statuses": checked,
    }
    worst = overhead
    if args.comfyui_dir is not None:
        python = args.comfyui_python or __import__("sys").executable
        real = real_server(args.data_dir, args.comfyui_dir, python, args.reps)
        without, with_pack = real["without the pack"], real["with the pack"]
        real_overhead = with_pack.median - without.median
        print(f"real ComfyUI server, POST /prompt, {args.reps} interleaved reps:")
        for name, s in real.items():
            print(_line(name, s))
        print(f"  guard overhead {real_overhead * 1e3:.2f} ms")
        doc["real_server"] = {
            "cases": {k: v.to_dict() for k, v in real.items()},
            "overhead_s": real_overhead,
        }
        worst = max(worst, real_overhead)
    ok = worst < TARGET_S and hashed == 0
    verdict = "PASS" if ok else "FAIL"
    print(f"{verdict} guard adds {worst * 1e3:.2f} ms with unchanged files (target < 30 ms)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
