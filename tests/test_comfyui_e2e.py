"""End to end against a REAL ComfyUI server (runs only when COMFYUI_DIR is set).

The server helpers are in ``bench/comfyui_server.py`` (the guard benchmark uses them too).

``COMFYUI_DIR`` is a ComfyUI checkout; ``COMFYUI_PYTHON`` the Python that runs
it (torch and ComfyUI's requirements installed, plus sonic-registry's core
dependencies; default: this Python). The test

1. lays out a private ComfyUI folder (the checkout's code, linked; its own
   ``custom_nodes``, ``models``, ``input``, ``output`` and ``user``), run with
   ``--base-directory`` so the checkout itself is never written to;
2. installs the pack with the documented command
   (``sonic-registry comfyui install --comfyui-dir``) and adds a stand-in of
   ComfyUI_Sonic (its three node types with their real inputs, no model work);
3. starts the server with ``--cpu`` on 127.0.0.1, this checkout first on
   ``PYTHONPATH``, and posts ComfyUI_Sonic's real ``example.json`` (turned into
   the API prompt the editor sends, widget names from ``/object_info``) with
   signed test releases: consistent (runs, logged), mixed (400 with
   node_errors), unknown UNet (runs with the warning), tampered (400).

The git-clone variant clones this repository into ``custom_nodes/sonic-registry``
instead, runs ComfyUI with a Python that has no sonic-registry installed (only
``pip install -r requirements.txt`` from the clone), and checks that the clone
registers the pack and its guard refuses a mixed prompt.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sonic_install import WORKFLOWS, install, make_registry, sonic_release
from test_comfyui_pack import write_wav

from sonic_registry.audit import find_output, verify_log

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # bench/ is a top-level package of the repo, not installed
    sys.path.insert(0, str(REPO))

from bench.comfyui_server import (  # noqa: E402
    Server,
    comfyui_python,
    install_command,
    layout,
    server_env,
    start_server,
    ui_to_api,
    widget_names_from_object_info,
)

EXAMPLE = WORKFLOWS / "smthemex-ComfyUI_Sonic" / "example.json"

pytestmark = pytest.mark.slow


def _installed_server(
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    trust_file: Path,
    shelf: Path | None = None,
) -> Iterator[tuple[Server, dict[str, Path]]]:
    """ComfyUI with the pack installed, the releases and config; with ``shelf``, the UNet
    and the SVD checkpoint live there, outside ``models/``, named by an
    ``extra_model_paths.yaml`` given with ``--extra-model-paths-config``."""
    where = os.environ.get("COMFYUI_DIR")
    if not where:
        pytest.skip(
            "COMFYUI_DIR is not set: the end-to-end test against a real ComfyUI server "
            "did not run (set COMFYUI_DIR, and COMFYUI_PYTHON to ComfyUI's Python)"
        )
    python = comfyui_python()
    base = layout(Path(where), tmp_path / "ComfyUI")
    installed = subprocess.run(
        [*install_command(python), "comfyui", "install", "--comfyui-dir", str(base)],
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.startswith("installed: ")

    bundles = _releases(base, tmp_path, make_bundle, trust_file)
    extra: tuple[str, ...] = ()
    if shelf is not None:
        for rel in ("sonic/unet.pth", "checkpoints/svd_xt_1_1.safetensors"):
            (shelf / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.move(base / "models" / rel, shelf / rel)
        yaml = tmp_path / "extra_model_paths.yaml"
        yaml.write_text(
            f"elsewhere:\n  base_path: {shelf}\n  sonic: sonic\n  checkpoints: checkpoints\n"
        )
        extra = ("--extra-model-paths-config", str(yaml))
    srv = start_server(base, python, tmp_path / "comfyui.log", extra_args=extra)
    try:
        yield srv, bundles
    finally:
        srv.stop()


@pytest.fixture
def server(
    tmp_path: Path, make_bundle: Callable[..., Path], trust_file: Path
) -> Iterator[tuple[Server, dict[str, Path]]]:
    yield from _installed_server(tmp_path, make_bundle, trust_file)


@pytest.fixture
def shelved_server(
    tmp_path: Path, make_bundle: Callable[..., Path], trust_file: Path
) -> Iterator[tuple[Server, dict[str, Path]]]:
    yield from _installed_server(tmp_path, make_bundle, trust_file, tmp_path / "shelf")


def _releases(
    base: Path, tmp_path: Path, make_bundle: Callable[..., Path], trust_file: Path
) -> dict[str, Path]:
    """Signed 1.2.0 and 1.3.0 test releases, 1.3.0 installed, the pack's config, an image."""
    v12 = sonic_release(make_bundle, "v12", version="1.2.0", step=50000)
    v13 = sonic_release(make_bundle, "v13", version="1.3.0", step=80000)
    make_registry(tmp_path / "reg", trust_file, [v12, v13]).close()
    install(v13, base / "models")
    config = base / "user" / "sonic_registry" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'registry = "{tmp_path / "reg"}"\ntrust = "{trust_file}"\n')
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 150, 120)).save(base / "input" / "4.jpg")
    return {"v12": v12, "v13": v13}


def _python_without_sonic_registry(python: str, venv: Path, requirements: Path) -> str:
    """A Python with ComfyUI's packages but no sonic-registry, after ``pip install -r``.

    A venv whose ``.pth`` names the site-packages of ComfyUI's Python as a plain
    path: its packages import, but the ``.pth`` files there (an editable
    sonic-registry's finder) do not run. Then ``pip install -r requirements.txt``
    from the clone, as ComfyUI-Manager runs it.
    """
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    own = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(own, "comfyui_python.pth").write_text(site + "\n")
    new = str(venv / "bin" / "python")
    pip = subprocess.run(
        [new, "-m", "pip", "install", "--quiet", "-r", str(requirements)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr[-3000:]
    probe = "import importlib.util as u; print(u.find_spec('sonic_registry') is None)"
    hidden = subprocess.run([new, "-c", probe], capture_output=True, text=True, cwd=venv)
    assert hidden.stdout.strip() == "True", hidden.stderr
    return new


@pytest.fixture
def cloned_server(
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    trust_file: Path,
) -> Iterator[tuple[Server, dict[str, Path], Path]]:
    """ComfyUI with the pack as ``git clone <repo> custom_nodes/sonic-registry`` (no install)."""
    where = os.environ.get("COMFYUI_DIR")
    if not where:
        pytest.skip("COMFYUI_DIR is not set: the git-clone test against a real ComfyUI did not run")
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout: the git-clone test did not run")
    base = layout(Path(where), tmp_path / "ComfyUI")
    clone = base / "custom_nodes" / "sonic-registry"
    done = subprocess.run(
        ["git", "clone", "--quiet", str(REPO), str(clone)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    python = _python_without_sonic_registry(
        comfyui_python(), tmp_path / "venv", clone / "requirements.txt"
    )
    bundles = _releases(base, tmp_path, make_bundle, trust_file)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SONIC_REGISTRY_CONFIG")}
    srv = start_server(base, python, tmp_path / "comfyui.log", env=env)
    try:
        yield srv, bundles, clone
    finally:
        srv.stop()


def test_real_comfyui_runs_the_pack_from_a_git_clone(
    cloned_server: tuple[Server, dict[str, Path], Path],
) -> None:
    srv, bundles, clone = cloned_server
    info = srv.get("/object_info")
    assert info["SonicRegistryCheck"]["python_module"] == "custom_nodes.sonic-registry"
    assert "/extensions/sonic-registry/sonic_registry.js" in srv.get("/extensions")
    prompt = ui_to_api(json.loads(EXAMPLE.read_text("utf-8")), widget_names_from_object_info(info))
    write_wav(srv.base / "input" / prompt["19"]["inputs"]["audio"], 3.0)
    sonic = srv.base / "models" / "sonic"

    status, body = srv.post_prompt(prompt)  # consistent: runs
    assert status == 200, body
    assert srv.wait_done(body["prompt_id"])["status"]["status_str"] == "success"

    shutil.copyfile(bundles["v12"] / "audio2token.pth", sonic / "audio2token.pth")
    status, body = srv.post_prompt(prompt)  # mixed: refused on the loaders
    assert status == 400, body
    assert {"14", "16", "17"} <= set(body["node_errors"])
    assert body["node_errors"]["17"]["errors"][0]["type"] == "sonic_registry_mixed"
    log = srv.log.read_text()
    assert "installed in ComfyUI's Python" not in log  # the clone's own code ran
    assert "IMPORT FAILED" not in log
    assert clone.is_dir()


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF
    path.write_bytes(bytes(data))


def test_real_comfyui_guards_sonic_prompts(server: tuple[Server, dict[str, Path]]) -> None:
    srv, bundles = server
    info = srv.get("/object_info")
    assert {"SONICTLoader", "SONIC_PreData", "SONICSampler", "SonicRegistryCheck"} <= set(info)
    prompt = ui_to_api(json.loads(EXAMPLE.read_text("utf-8")), widget_names_from_object_info(info))
    write_wav(srv.base / "input" / prompt["19"]["inputs"]["audio"], 3.0)
    sonic = srv.base / "models" / "sonic"
    log = srv.base / "user" / "sonic_registry" / "generations.jsonl"

    # 1. consistent: runs, and the generation log says which release made the video.
    status, body = srv.post_prompt(prompt)
    assert status == 200, body
    entry = srv.wait_done(body["prompt_id"])
    assert entry["status"]["status_str"] == "success", entry["status"]
    (video,) = (srv.base / "output" / "video").glob("*.mp4")
    deadline = time.monotonic() + 30
    while not (log.exists() and find_output(log, video)) and time.monotonic() < deadline:
        time.sleep(0.2)
    ((_line, record),) = find_output(log, video)
    assert record.fields["release"]["id"] == "sonic@1.3.0#1"
    assert record.fields["prompt_id"] == body["prompt_id"]
    assert verify_log(log).ok

    # 2. mixed: the 1.2.0 audio encoder beside 1.3.0 files -> 400, loaders outlined.
    kept = (sonic / "audio2token.pth").read_bytes()
    shutil.copyfile(bundles["v12"] / "audio2token.pth", sonic / "audio2token.pth")
    status, body = srv.post_prompt(prompt)
    assert status == 400, body
    assert {"14", "16", "17"} <= set(body["node_errors"])
    assert body["node_errors"]["17"]["errors"][0]["type"] == "sonic_registry_mixed"
    assert "releases must not be mixed" in body["node_errors"]["17"]["errors"][0]["details"]
    (sonic / "audio2token.pth").write_bytes(kept)

    # 3. unknown UNet: runs, with the non-official warning (logged and recorded).
    (sonic / "my_finetune.pth").write_bytes(b"a community fine-tune" * 500)
    unknown = json.loads(json.dumps(prompt))
    unknown["14"]["inputs"]["sonic_unet"] = "my_finetune.pth"
    status, body = srv.post_prompt(unknown)
    assert status == 200, body
    assert srv.wait_done(body["prompt_id"])["status"]["status_str"] == "success"
    assert "non-official checkpoint detected: sonic/my_finetune.pth" in srv.log.read_text()

    # 4. tampered: one flipped byte in unet.pth -> 400 on the loader.
    _flip_byte(sonic / "unet.pth")
    status, body = srv.post_prompt(prompt)
    assert status == 400, body
    (err,) = body["node_errors"]["14"]["errors"]
    assert err["type"] == "sonic_registry_tampered"
    assert "tampered or corrupted" in err["details"]

    # 5. the one-click check and the badge statuses.
    report = srv.get("/sonic_registry/check")
    rows = {r["path"]: r for r in report["files"]}
    assert rows["sonic/audio2bucket.pth"]["status"] == "official"
    assert rows["sonic/unet.pth"]["status"] == "unknown"
    assert rows["sonic/my_finetune.pth"]["status"] == "unknown"
    files = srv.get("/sonic_registry/files")["files"]
    assert files["sonic/unet.pth"]["status"] in ("unknown", "unchecked")


def test_editor_shows_the_warning_badges_and_check(tmp_path: Path) -> None:
    """Headless Chromium on the real editor: toast, badges, the menu's check, a refusal."""
    if not os.environ.get("COMFYUI_DIR"):
        pytest.skip("COMFYUI_DIR is not set: the browser test against a real ComfyUI did not run")
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip(
            "no `chromium` on PATH: the browser test did not run (apt-get install chromium)"
        )
    python = comfyui_python()
    shot, check, refused = (tmp_path / f"{n}.png" for n in ("warning", "check", "refused"))
    done = subprocess.run(
        [
            python,
            "-m",
            "bench.comfyui_screenshot",
            "--comfyui-dir",
            os.environ["COMFYUI_DIR"],
            "--out",
            str(shot),
            "--check-out",
            str(check),
            "--refused-out",
            str(refused),
            "--chromium",
            chromium,
        ],
        cwd=REPO,
        env={**server_env(), "COMFYUI_PYTHON": python},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    (toast,) = seen["toasts"]
    assert "⚠️ non-official checkpoint detected: sonic/my_finetune.pth (sha256 " in toast
    assert toast.endswith("compatibility risk; use a verified release")
    assert "⚠ non-official" in seen["badges"]["SONICTLoader"]
    assert "✔ official" in seen["badges"]["SONIC_PreData"]
    assert "✔ official" in seen["badges"]["ImageOnlyCheckpointLoader"]
    assert "sonic/my_finetune.pth\t-\t-\t⚠ non-official" in seen["check_dialog"]
    assert "sonic/unet.pth\tsonic@1.3.0#1\tunet\t✔ official\tok" in seen["check_dialog"]
    # A tampered unet.pth: the editor marks the loader and shows the one-line reason.
    assert seen["refused"]["node_errors"] == ["14"]
    assert (
        "Sonic release check refused this prompt: sonic/unet.pth has the name and size"
        in (seen["refused"]["dialog"])
    )
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and check.stat().st_size > 10_000


def test_real_comfyui_extra_model_paths(
    shelved_server: tuple[Server, dict[str, Path]], tmp_path: Path
) -> None:
    """The UNet and SVD checkpoint outside ``models/``, in an ``extra_model_paths.yaml``
    folder: the guard checks the files ComfyUI loads from there, in its order."""
    srv, bundles = shelved_server
    shelf = tmp_path / "shelf"
    info = srv.get("/object_info")
    assert "unet.pth" in info["SONICTLoader"]["input"]["required"]["sonic_unet"][0]
    prompt = ui_to_api(json.loads(EXAMPLE.read_text("utf-8")), widget_names_from_object_info(info))
    write_wav(srv.base / "input" / prompt["19"]["inputs"]["audio"], 3.0)
    assert not (srv.base / "models" / "sonic" / "unet.pth").exists()

    # 1. found in the extra folders: runs (ComfyUI itself finds the checkpoint there too).
    status, body = srv.post_prompt(prompt)
    assert status == 200, body
    assert srv.wait_done(body["prompt_id"])["status"]["status_str"] == "success"

    # 2. The same name in models/sonic too: ComfyUI loads the extra folder's (listed
    #    first, before ComfyUI_Sonic adds models/sonic), so a 1.2.0 file there is not used.
    shutil.copyfile(bundles["v12"] / "unet.pth", srv.base / "models" / "sonic" / "unet.pth")
    status, body = srv.post_prompt(prompt)
    assert status == 200, body
    assert srv.wait_done(body["prompt_id"])["status"]["status_str"] == "success"

    # 3. The extra folder's file is the one judged: one flipped byte -> 400 on the loader.
    kept = (shelf / "sonic" / "unet.pth").read_bytes()
    _flip_byte(shelf / "sonic" / "unet.pth")
    status, body = srv.post_prompt(prompt)
    assert status == 400, body
    (err,) = body["node_errors"]["14"]["errors"]
    assert err["type"] == "sonic_registry_tampered"

    # 4. A link in the extra folder leading out of it: refused, never read.
    secret = tmp_path / "secret" / "unet.pth"
    secret.parent.mkdir()
    secret.write_bytes(kept)
    (shelf / "sonic" / "unet.pth").unlink()
    (shelf / "sonic" / "unet.pth").symlink_to(secret)
    status, body = srv.post_prompt(prompt)
    assert status == 400, body
    (err,) = body["node_errors"]["14"]["errors"]
    assert err["type"] == "sonic_registry_unsafe"
    assert f"expected a file inside {shelf / 'sonic'}, found a link to {secret}" in err["details"]

    (shelf / "sonic" / "unet.pth").unlink()
    (shelf / "sonic" / "unet.pth").write_bytes(kept)

    # 5. The one-click check lists the extra folders' files, by full path.
    report = srv.get("/sonic_registry/check")
    rows = {r["path"]: r for r in report["files"]}
    assert rows[(shelf / "sonic" / "unet.pth").as_posix()]["status"] == "official"
    ckpt = rows[(shelf / "checkpoints" / "svd_xt_1_1.safetensors").as_posix()]
    assert ckpt["release_id"] == "sonic@1.3.0#1"
    assert rows["sonic/audio2token.pth"]["status"] == "official"
