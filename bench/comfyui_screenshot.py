"""Take the README's screenshot: the guard's warning in a real ComfyUI editor.

``COMFYUI_PYTHON=... python -m bench.comfyui_screenshot --comfyui-dir DIR --out PNG [--locale zh]``
(run it with ComfyUI's Python: it drives Chromium over the DevTools protocol
with aiohttp, which ComfyUI already needs). It prints, as JSON, what the page
showed: the toast texts, the badge texts per loader node type and, with
``--check-out``, the text of the one-click check's table, and with
``--refused-out`` the nodes the editor marks after a tampered ``unet.pth`` is
refused, and its error dialog. It starts a private ComfyUI with
the pack (installed with the documented command) and the ComfyUI_Sonic
stand-in, a signed Sonic release and an unknown ``my_finetune.pth``, opens
the editor in headless Chromium (Debian's ``chromium``), loads ComfyUI_Sonic's
``example.json`` with that UNet selected, queues it, and captures the page
with the warning toast and the loader badges.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from .comfyui_guard import RACY_SECONDS, _trust, _wav
from .comfyui_server import (
    comfyui_python,
    install_command,
    layout,
    server_env,
    start_server,
)
from .data import ensure_install, ensure_keys

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parent / "tests/data/workflows/smthemex-ComfyUI_Sonic/example.json"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


async def _cdp(ws_url: str, steps: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    import aiohttp

    results = []
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url, max_msg_size=0) as ws:
        for i, (method, params) in enumerate(steps, start=1):
            if method == "sleep":
                await asyncio.sleep(params["seconds"])
                results.append(None)
                continue
            await ws.send_json({"id": i, "method": method, "params": params})
            while True:
                msg = await ws.receive_json()
                if msg.get("id") == i:
                    if "error" in msg:
                        raise RuntimeError(f"{method}: {msg['error']}")
                    results.append(msg.get("result"))
                    break
    return results


def _page_ws(port: int, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json", timeout=5) as r:
                pages = [p for p in json.loads(r.read()) if p.get("type") == "page"]
            if pages:
                return str(pages[0]["webSocketDebuggerUrl"])
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("Chromium's DevTools endpoint did not answer")
        time.sleep(0.5)


def _eval(expression: str) -> tuple[str, dict[str, Any]]:
    return (
        "Runtime.evaluate",
        {"expression": expression, "awaitPromise": True, "returnByValue": True},
    )


#: What the page shows: toast texts and the badge text of each loader node.
_SEEN = """(() => {
  const app = window.comfyAPI.app.app;
  const toasts = [...document.querySelectorAll('.p-toast-message')].map((t) => t.innerText);
  const badges = {};
  for (const node of app.graph.nodes) {
    const texts = (node.badges ?? []).map((b) => (typeof b === 'function' ? b() : b))
      .map((b) => b?.text ?? '').filter((t) => t);
    if (texts.length) badges[node.comfyClass] = texts;
  }
  return { toasts, badges };
})()"""


_DIALOG = "document.getElementById('sonic-registry-dialog')"


def _refuse_steps(app: str) -> list[tuple[str, dict[str, Any]]]:
    """Select the (now tampered) unet.pth, queue, and read what the editor shows."""
    select = (
        f"(() => {{ const n = {app}.graph.nodes.find((n) => n.comfyClass === 'SONICTLoader');"
        " n.widgets.find((w) => w.name === 'sonic_unet').value = 'unet.pth'; return 'ok'; })()"
    )
    read = (
        f"(() => ({{ node_errors: Object.keys({app}.lastNodeErrors ?? {{}}),"
        " dialog: document.querySelector('.p-dialog')?.innerText ?? '' }))()"
    )
    return [
        _eval(select),
        _eval(f"{app}.queuePrompt(0, 1).then(() => 'queued', (e) => String(e))"),
        ("sleep", {"seconds": 4}),
        ("Page.captureScreenshot", {"format": "png"}),
        _eval(read),
    ]


def _write(path: Path, shot: dict[str, Any]) -> None:
    png = base64.b64decode(shot["data"])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png)


def prepare(checkout: Path, work: Path, python: str, locale: str) -> Path:
    data = HERE / "data"
    keys = ensure_keys(data)
    inst = ensure_install(data, keys)
    base = layout(checkout, work / "ComfyUI")
    subprocess.run(
        [*install_command(python), "comfyui", "install", "--comfyui-dir", str(base)],
        env=server_env(),
        check=True,
        capture_output=True,
    )
    shutil.copytree(inst.models, base / "models", dirs_exist_ok=True)
    shutil.copyfile(
        base / "models/checkpoints/video/svd_xt_1_1.safetensors",
        base / "models/checkpoints/svd_xt_1_1.safetensors",
    )
    (base / "models/sonic/my_finetune.pth").write_bytes(os.urandom(1 << 16))
    config = base / "user" / "sonic_registry" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'registry = "{inst.registry}"\ntrust = "{_trust(data, keys)}"\n')
    settings = base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(
        json.dumps(
            {
                "Comfy.TutorialCompleted": True,
                "Comfy.Locale": locale,
                "Comfy.UseNewMenu": "Top",
                "Comfy.Minimap.Visible": False,
            }
        )
    )
    from PIL import Image

    Image.new("RGB", (256, 256), (210, 170, 140)).save(base / "input" / "4.jpg")
    doc = json.loads(EXAMPLE.read_text("utf-8"))
    audio = next(n for n in doc["nodes"] if n["type"] == "LoadAudio")["widgets_values"][0]
    _wav(base / "input" / audio, 3.0)
    return base


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.comfyui_screenshot", description=__doc__)
    p.add_argument("--comfyui-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--locale", default="en", choices=("en", "zh"))
    p.add_argument("--chromium", default="chromium")
    p.add_argument("--check-out", type=Path, help="also run the one-click check; PNG of it")
    p.add_argument(
        "--refused-out", type=Path, help="also queue a tampered unet.pth; PNG of the refusal"
    )
    args = p.parse_args(argv)
    python = comfyui_python()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = prepare(args.comfyui_dir, work, python, args.locale)
        time.sleep(RACY_SECONDS)
        srv = start_server(base, python, work / "comfyui.log")
        port = 9222 + os.getpid() % 1000
        chrome = subprocess.Popen(
            [
                args.chromium,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={work / 'chrome'}",
                f"--remote-debugging-port={port}",
                "--window-size=1600,1000",
                srv.url,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            doc = json.loads(EXAMPLE.read_text("utf-8"))
            loader = next(n for n in doc["nodes"] if n["type"] == "SONICTLoader")
            loader["widgets_values"][0] = "my_finetune.pth"
            app = "window.comfyAPI.app.app"
            ws = _page_ws(port)
            shown = asyncio.run(
                _cdp(
                    ws,
                    [
                        ("sleep", {"seconds": 12}),
                        _eval(f"{app}.loadGraphData({json.dumps(doc)}).then(() => 'loaded')"),
                        ("sleep", {"seconds": 2}),
                        _eval(
                            f"{app}.extensionManager.command.execute('Comfy.Canvas.FitView')"
                            ".then(() => 'fit', () => 'no fit')"
                        ),
                        _eval(f"{app}.queuePrompt(0, 1).then(() => 'queued')"),
                        ("sleep", {"seconds": 5}),
                        ("Page.captureScreenshot", {"format": "png"}),
                        _eval(_SEEN),
                    ],
                )
            )
            _write(args.out, shown[-2])
            seen = shown[-1]["result"]["value"]
            if args.check_out is not None:
                check = asyncio.run(
                    _cdp(
                        ws,
                        [
                            _eval(f"{app}.extensionManager.command.execute('SonicRegistry.Check')"),
                            ("sleep", {"seconds": 4}),
                            ("Page.captureScreenshot", {"format": "png"}),
                            _eval(f"{_DIALOG}?.innerText ?? ''"),
                            _eval(f"{_DIALOG}?.remove()"),
                        ],
                    )
                )
                _write(args.check_out, check[2])
                seen["check_dialog"] = check[3]["result"]["value"]
            if args.refused_out is not None:
                unet = base / "models" / "sonic" / "unet.pth"
                data = bytearray(unet.read_bytes())
                data[4096] ^= 0xFF
                unet.write_bytes(bytes(data))
                refused = asyncio.run(_cdp(ws, _refuse_steps(app)))
                _write(args.refused_out, refused[-2])
                seen["refused"] = refused[-1]["result"]["value"]
            print(json.dumps(seen, ensure_ascii=False))
        finally:
            chrome.terminate()
            chrome.wait(timeout=30)
            srv.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
