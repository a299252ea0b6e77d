"""The ComfyUI pack: guard logic on the real workflows, and the glue on a stand-in server.

Real signed releases, a real registry and trust store, a ComfyUI-shaped models
folder; the server is :mod:`comfyui_standin` (ComfyUI's behaviour, including
the swallowed on-prompt handler exception). The end-to-end test against a real
ComfyUI is ``test_comfyui_e2e.py``.
"""

from __future__ import annotations

import json
import shutil
import sys
import types
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from comfyui_standin import StandIn
from sonic_install import WORKFLOWS, dice_release, install, make_registry, sonic_release

from sonic_registry.audit import find_output, verify_log
from sonic_registry.cli import main
from sonic_registry.comfyui_pack import glue
from sonic_registry.comfyui_pack.config import PackConfig, load_config
from sonic_registry.comfyui_pack.context import open_context
from sonic_registry.comfyui_pack.guard import Verdict, guard_prompt, is_sonic_prompt
from sonic_registry.comfyui_pack.install import PACK_DIR_NAME
from sonic_registry.comfyui_pack.messages import comfy_locale
from sonic_registry.errors import InvalidManifest, UnreadableInputError

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # bench/ is a top-level package of the repo, not installed
    sys.path.insert(0, str(REPO))

from bench.comfyui_server import ui_to_api  # noqa: E402

EXAMPLE = WORKFLOWS / "smthemex-ComfyUI_Sonic" / "example.json"
SDXL_API = WORKFLOWS / "Peleke-comfyui-mcp" / "19fceae" / "lipsync-sonic.json"


def write_wav(path: Path, seconds: float, rate: int = 16000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x01" * int(seconds * rate))


@dataclass
class World:
    tmp: Path
    standin: StandIn
    models: Path
    v12: Path
    v13: Path
    community: Path
    dice: Path
    config: Path
    ui: dict[str, Any]
    api: dict[str, Any]

    def context(self, **overrides: Any) -> Any:
        config = load_config(self.standin.base / "user")
        return open_context(
            config,
            self.models,
            user_dir=self.standin.base / "user",
            input_dir=self.standin.base / "input",
        )

    def guard(self, prompt: dict[str, Any] | None = None) -> Verdict:
        return guard_prompt(prompt if prompt is not None else self.api, self.context())


@pytest.fixture
def world(
    tmp_path: Path,
    make_bundle: Callable[..., Path],
    trust_file: Path,
    community_key: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    monkeypatch.delenv("SONIC_REGISTRY_CONFIG", raising=False)
    v12 = sonic_release(make_bundle, "v12", version="1.2.0", step=50000)
    v13 = sonic_release(make_bundle, "v13", version="1.3.0", step=80000)
    community = sonic_release(
        make_bundle, "v13c", version="1.3.1", step=81000, channel="community", key=community_key
    )
    dice = dice_release(make_bundle, community_key, files={"unet": "unet.pth"})
    make_registry(tmp_path / "reg", trust_file, [v12, v13, community, dice]).close()
    standin = StandIn(tmp_path / "comfy")
    models = install(v13, standin.base / "models")
    ui = json.loads(EXAMPLE.read_text("utf-8"))
    api = ui_to_api(ui)
    write_wav(standin.base / "input" / api["19"]["inputs"]["audio"], 3.0)
    config = standin.base / "user" / "sonic_registry" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'registry = "{tmp_path / "reg"}"\ntrust = "{trust_file}"\n')
    return World(tmp_path, standin, models, v12, v13, community, dice, config, ui, api)


def _flip_byte(path: Path, offset: int = 100) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


# --- the guard's logic on the real workflows ------------------------------------


def test_consistent_example_passes_in_both_formats(world: World) -> None:
    ctx = world.context()
    for doc in (world.ui, world.api):
        verdict = guard_prompt(doc, ctx)
        assert verdict.ok, [f.message for f in verdict.findings]
        assert verdict.findings == ()
        assert verdict.resolution is not None
        assert verdict.resolution.release is not None
        assert verdict.resolution.release.release.release_id == "sonic@1.3.0#1"
        assert dict(verdict.statuses) == {"14": "official", "16": "official", "17": "official"}
        assert verdict.audio is not None and abs(verdict.audio.duration - 3.0) < 1e-6


def test_mixed_releases_refused_on_each_loader_node(world: World) -> None:
    shutil.copyfile(world.v12 / "audio2token.pth", world.models / "sonic" / "audio2token.pth")
    verdict = world.guard()
    kinds = {f.kind for f in verdict.refused}
    assert kinds == {"mixed"}
    (mixed,) = verdict.refused
    assert set(mixed.nodes) == {"14", "16", "17"}
    assert "audio_encoder is sonic 1.2.0 step 50000" in mixed.message[0]
    assert mixed.message[1].startswith("混用了不同发布版本的模型文件")
    assert verdict.statuses["17"] == "mixed"


def test_tampered_unet_refused_unknown_unet_only_warned(world: World) -> None:
    unet = world.models / "sonic" / "unet.pth"
    original = unet.read_bytes()
    _flip_byte(unet)
    verdict = world.guard()
    (tampered,) = verdict.refused
    assert tampered.kind == "tampered" and tampered.nodes == ("14",)
    assert "has the name and size of sonic@1.3.0#1 unet but other bytes" in tampered.message[0]
    assert verdict.statuses["14"] == "tampered"

    unet.write_bytes(original)
    (world.models / "sonic" / "my_finetune.pth").write_bytes(b"not a release" * 100)
    api = json.loads(json.dumps(world.api))
    api["14"]["inputs"]["sonic_unet"] = "my_finetune.pth"
    verdict = world.guard(api)
    assert verdict.ok
    (warning,) = verdict.warnings
    assert warning.kind == "unknown" and warning.nodes == ("14",)
    assert warning.message[0].startswith(
        "⚠️ non-official checkpoint detected: sonic/my_finetune.pth (sha256 "
    )
    assert warning.message[0].endswith("compatibility risk; use a verified release")
    assert "检测到非官方模型文件" in warning.message[1]
    assert warning.sha256 is not None and warning.sha256 in warning.message[0]


def test_release_of_another_model_refused(world: World) -> None:
    shutil.copyfile(world.dice / "unet.pth", world.models / "sonic" / "unet.pth")
    verdict = world.guard()
    other = [f for f in verdict.refused if f.kind == "other_model"]
    assert other and other[0].nodes == ("14",)
    assert "is unet of dice-talk 1.0.0, not a release of sonic" in other[0].message[0]


def test_community_release_runs_with_a_warning(world: World) -> None:
    install(world.community, world.models)
    verdict = world.guard()
    assert verdict.ok
    assert {f.kind for f in verdict.warnings} == {"community"}
    assert verdict.statuses["14"] == "community"


def test_params_and_duration(world: World) -> None:
    api = json.loads(json.dumps(world.api))
    api["15"]["inputs"]["dynamic_scale"] = 1.25
    api["17"]["inputs"]["duration"] = 5.0
    verdict = world.guard(api)
    assert verdict.ok
    by_kind = {f.kind: f for f in verdict.warnings}
    assert "above the recommended 1.0..1.2" in by_kind["params"].message[0]
    assert by_kind["params"].nodes == ("15",)
    assert "use duration=3.000" in by_kind["duration"].message[0]
    assert by_kind["duration"].nodes == ("17",)
    api["15"]["inputs"]["inference_steps"] = 12
    verdict = world.guard(api)
    (refused,) = verdict.refused
    assert refused.kind == "params_outside_allowed"
    assert "inference_steps=12 is below the allowed 15..100" in refused.message[0]


def test_old_interface_and_wrong_family_refused(world: World) -> None:
    verdict = world.guard(json.loads(SDXL_API.read_text()))
    assert not verdict.ok
    kinds = {f.kind for f in verdict.refused}
    assert "interface" in kinds
    assert any("6" in f.nodes and "wrong model family" in f.message[0] for f in verdict.refused)
    old = json.loads((WORKFLOWS / "smthemex-ComfyUI_Sonic" / "20250211.json").read_text())
    verdict = world.guard(old)
    assert any("old ComfyUI_Sonic interface" in f.message[0] for f in verdict.refused)


def test_policy_from_config_turns_a_warning_into_a_refusal(world: World) -> None:
    world.config.write_text(world.config.read_text() + '[policy]\nunknown = "refuse"\n')
    (world.models / "sonic" / "my_finetune.pth").write_bytes(b"x" * 1000)
    api = json.loads(json.dumps(world.api))
    api["14"]["inputs"]["sonic_unet"] = "my_finetune.pth"
    assert [f.kind for f in world.guard(api).refused] == ["unknown"]


def test_config_errors_are_one_line(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.config.write_text('[policy]\nmixed = "maybe"\n')
    with pytest.raises(InvalidManifest) as exc:
        load_config(world.standin.base / "user")
    assert str(exc.value) == (
        f'{world.config}: policy.mixed: expected "refuse", "warn" or "ignore", found \'maybe\''
    )
    world.config.write_text('registry = "/srv/reg"\n')
    with pytest.raises(InvalidManifest, match=r"trust: expected a trust\.json path"):
        load_config(world.standin.base / "user")
    monkeypatch.setenv("SONIC_REGISTRY_CONFIG", str(world.tmp / "nope.toml"))
    with pytest.raises(UnreadableInputError, match="no such file \\(named by SONIC_REGISTRY"):
        load_config(world.standin.base / "user")
    other = world.tmp / "other.toml"
    other.write_text('locale = "zh"\nbuiltin_catalog = false\n')
    monkeypatch.setenv("SONIC_REGISTRY_CONFIG", str(other))
    config = load_config(world.standin.base / "user")
    assert (config.locale, config.builtin_catalog, config.registry) == ("zh", False, None)


def test_locale_follows_comfyui_setting(tmp_path: Path) -> None:
    assert comfy_locale(tmp_path) == "en"
    settings = tmp_path / "default" / "comfy.settings.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"Comfy.Locale": "zh-CN"}))
    assert comfy_locale(tmp_path) == "zh"
    assert comfy_locale(tmp_path, "en") == "en"


def test_non_sonic_prompt_is_not_guarded() -> None:
    assert not is_sonic_prompt({"1": {"class_type": "KSampler", "inputs": {}}})
    assert is_sonic_prompt({"1": {"class_type": "SONICSampler", "inputs": {}}})
    assert not is_sonic_prompt([])


# --- the glue on the stand-in server ---------------------------------------------


@pytest.fixture
def pack(world: World, monkeypatch: pytest.MonkeyPatch) -> Iterator[glue.Pack]:
    for name, module in world.standin.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    web = types.ModuleType("aiohttp.web")
    web.json_response = lambda body, status=200: (status, body)  # type: ignore[attr-defined]
    aiohttp = types.ModuleType("aiohttp")
    aiohttp.web = web  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aiohttp", aiohttp)
    monkeypatch.setitem(sys.modules, "aiohttp.web", web)
    s = world.standin
    p = glue.Pack(s.server, s.execution, s.folder_paths, s.nodes)
    p.install()
    p.add_routes()
    yield p
    p.executor.shutdown(wait=True)


def _drain(p: glue.Pack) -> None:
    p.executor.submit(lambda: None).result()


def test_refused_prompt_answers_400_with_node_errors(world: World, pack: glue.Pack) -> None:
    shutil.copyfile(world.v12 / "audio2token.pth", world.models / "sonic" / "audio2token.pth")
    status, body = world.standin.post(world.api, client_id="c1")
    assert status == 400
    assert set(body["node_errors"]) == {"14", "16", "17"}
    err = body["node_errors"]["17"]["errors"][0]
    assert err["type"] == "sonic_registry_mixed"
    assert "releases must not be mixed" in err["details"]
    assert body["node_errors"]["17"]["class_type"] == "SONIC_PreData"
    assert body["error"]["type"] == "sonic_registry_refused"
    assert world.standin.server.prompt_queue.queue == []


def test_tampered_prompt_refused_in_chinese_when_comfyui_is_zh(
    world: World, pack: glue.Pack
) -> None:
    settings = world.standin.base / "user" / "default" / "comfy.settings.json"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"Comfy.Locale": "zh"}))
    _flip_byte(world.models / "sonic" / "unet.pth")
    status, body = world.standin.post(world.api)
    assert status == 400
    (err,) = body["node_errors"]["14"]["errors"]
    assert err["message"] == "Sonic 发布版本检查拒绝了此任务"
    assert "文件被篡改或已损坏" in err["details"]


def test_unknown_unet_runs_warns_and_is_logged(world: World, pack: glue.Pack) -> None:
    (world.models / "sonic" / "my_finetune.pth").write_bytes(b"y" * 4096)
    api = json.loads(json.dumps(world.api))
    api["14"]["inputs"]["sonic_unet"] = "my_finetune.pth"
    status, body = world.standin.post(api, client_id="browser-1")
    assert status == 200, body
    (verdict,) = world.standin.events("sonic_registry.verdict")
    assert verdict["prompt_id"] == body["prompt_id"]
    assert verdict["statuses"]["14"] == "unknown"
    (warning,) = verdict["warnings"]
    assert "non-official checkpoint detected" in warning["en"] and "非官方" in warning["zh"]
    sids = [sid for e, _d, sid in world.standin.server.sent if e == "sonic_registry.verdict"]
    assert sids == ["browser-1"]
    # Executed: one record in the audit log, which `audit find` answers for the saved file.
    assert world.standin.run_next() == body["prompt_id"]
    _drain(pack)
    log = world.standin.base / "user" / "sonic_registry" / "generations.jsonl"
    assert verify_log(log).ok
    (video,) = (world.standin.base / "output" / "video").glob("*.mp4")
    ((_line, record),) = find_output(log, video)
    assert record.fields["prompt_id"] == body["prompt_id"]
    assert record.fields["release"]["id"] == "sonic@1.3.0#1"
    unet = next(c for c in record.fields["components"] if c["node"] == "14")
    assert unet["file"] == "sonic/my_finetune.pth" and unet["release_id"] is None
    assert record.fields["params"]["inference_steps"] == 25
    assert record.fields["params"]["duration"] == 3.0
    assert record.fields["audio"]["duration"] == 3.0
    assert record.fields["warnings"][0].startswith("⚠️ non-official checkpoint detected")
    runner = CliRunner()
    out = runner.invoke(main, ["audit", "find", str(video), "--log", str(log)])
    assert out.exit_code == 0, out.output
    assert "sonic@1.3.0#1" in out.output


def test_guard_failure_fails_closed(
    world: World, pack: glue.Pack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A trust store that cannot be read: the guard cannot judge, so nothing runs.
    trust = Path(world.config.read_text().split('trust = "')[1].split('"')[0])
    kept = trust.read_text()
    trust.write_text("{")
    pack._ctx = None
    status, body = world.standin.post(world.api)
    assert status == 400
    assert body["error"]["type"] == "sonic_registry_refused"
    assert set(body["node_errors"]) == {"14", "15", "17"}
    details = body["node_errors"]["14"]["errors"][0]["details"]
    assert details.startswith("sonic-registry could not check this prompt, so it was not run")
    assert world.standin.server.prompt_queue.queue == []

    def boom(prompt: Any, ctx: Any) -> Verdict:
        raise RuntimeError("bug in the guard")

    trust.write_text(kept)
    pack._ctx = None
    monkeypatch.setattr(glue, "guard_prompt", boom)
    status, body = world.standin.post(world.api)
    assert status == 400 and "RuntimeError: bug in the guard" in body["error"]["details"]


def test_on_prompt_handler_alone_would_fail_open(world: World, pack: glue.Pack) -> None:
    """Why the guard is not an on-prompt handler: the server swallows its exception."""

    def refuse(json_data: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("refused")

    world.standin.server.add_on_prompt_handler(refuse)
    status, _body = world.standin.post(world.api)
    assert status == 200  # the handler's refusal was ignored; our validation hook passed it


def test_sonic_nodes_refuse_prompts_the_guard_never_saw(world: World, pack: glue.Pack) -> None:
    from comfyui_standin import validate_prompt

    world.standin.execution.validate_prompt = validate_prompt  # another pack bypasses the hook
    status, body = world.standin.post(world.api)
    assert status == 200
    world.standin.run_next()
    history = world.standin.server.prompt_queue.history[body["prompt_id"]]
    assert history["status"]["status_str"] == "error"
    (error,) = world.standin.events("execution_error")
    assert "was not checked by the release guard (fail closed)" in error["exception"]
    assert not (world.standin.base / "user" / "sonic_registry" / "generations.jsonl").exists()


def test_non_sonic_prompt_passes_untouched(world: World, pack: glue.Pack) -> None:
    prompt = {
        "1": {
            "class_type": "SaveVideo",
            "inputs": {"video": "v", "filename_prefix": "x", "format": "mp4", "codec": "h264"},
        }
    }
    status, body = world.standin.post(prompt)
    assert status == 200 and body["node_errors"] == {}
    assert world.standin.events("sonic_registry.verdict") == []


def test_check_route_and_badge_statuses(
    world: World, pack: glue.Pack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from sonic_registry.digest import StatCache

    status, files = asyncio.run(world.standin.server.get("/sonic_registry/files"))
    assert status == 200 and files["files"]["sonic/unet.pth"] == {"status": "unchecked"}
    monkeypatch.setattr(StatCache, "RACY_SECONDS", 0.0)  # cache the files just written
    (world.models / "sonic" / "my_finetune.pth").write_bytes(b"z" * 2048)
    status, report = asyncio.run(world.standin.server.get("/sonic_registry/check"))
    assert status == 200
    rows = {r["path"]: r for r in report["files"]}
    assert rows["sonic/unet.pth"]["status"] == "official"
    assert rows["sonic/unet.pth"]["release_id"] == "sonic@1.3.0#1"
    assert rows["sonic/my_finetune.pth"]["status"] == "unknown"
    assert report["ok"] is False and report["summary"]["unknown"] == 1
    assert world.standin.events("sonic_registry.progress")[-1]["done"] == report["total_bytes"]
    status, files = asyncio.run(world.standin.server.get("/sonic_registry/files"))
    assert status == 200
    # The check filled the digest cache: the badges now know every file without reading it.
    assert files["files"]["sonic/unet.pth"]["status"] == "official"
    assert files["files"]["sonic/unet.pth"]["release_id"] == "sonic@1.3.0#1"
    assert files["files"]["sonic/my_finetune.pth"]["status"] == "unknown"
    world.config.write_text('[policy]\nmixed = "maybe"\n')
    status, body = asyncio.run(world.standin.server.get("/sonic_registry/check"))
    assert status == 400
    assert body == {
        "ok": False,
        "error": f'{world.config}: policy.mixed: expected "refuse", "warn" or "ignore", '
        "found 'maybe'",
    }


def test_check_node_shows_the_table(world: World, pack: glue.Pack, monkeypatch: Any) -> None:
    monkeypatch.setattr(glue, "_PACK", pack)
    out = glue.SonicRegistryCheck().run()
    text = out["ui"]["text"][0]
    assert "sonic/unet.pth: official, sonic@1.3.0#1 unet -> ok" in text
    assert json.loads(out["result"][0])["ok"] is True


# --- install ------------------------------------------------------------------------


def test_install_is_idempotent_and_uninstall_removes_only_ours(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    comfy = tmp_path / "ComfyUI"
    (comfy / "custom_nodes").mkdir(parents=True)
    (comfy / "main.py").write_text("")
    runner = CliRunner()
    args = ["comfyui", "install", "--comfyui-dir", str(comfy)]
    first = runner.invoke(main, args)
    assert first.exit_code == 0 and first.output.startswith("installed: ")
    again = runner.invoke(main, args)
    assert again.exit_code == 0 and again.output.startswith("already installed: ")
    init = comfy / "custom_nodes" / PACK_DIR_NAME / "__init__.py"
    # The written pack loads in a (stand-in) ComfyUI and serves the web extension.
    for name, module in world.standin.modules().items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(glue, "_PACK", None)
    monkeypatch.setattr(glue, "_SERVED_FROM", None)
    monkeypatch.setattr(glue.Pack, "add_routes", lambda self: None)
    namespace: dict[str, Any] = {"__file__": str(init)}
    exec(compile(init.read_text(), str(init), "exec"), namespace)
    assert "SonicRegistryCheck" in namespace["NODE_CLASS_MAPPINGS"]
    assert (Path(namespace["WEB_DIRECTORY"]) / "sonic_registry.js").is_file()
    assert getattr(world.standin.execution.validate_prompt, "__sonic_registry_guard__", False)
    assert glue._PACK is not None
    glue._PACK.executor.shutdown()
    gone = runner.invoke(main, [*args, "--uninstall"])
    assert gone.exit_code == 0 and gone.output.startswith("removed: ")
    assert not init.parent.exists()
    foreign = comfy / "custom_nodes" / PACK_DIR_NAME
    foreign.mkdir()
    (foreign / "__init__.py").write_text("# someone else's\n")
    refused = runner.invoke(main, args)
    assert refused.exit_code == 2
    assert "exists and was not written by sonic-registry; not touched" in refused.output
    bad = runner.invoke(main, ["comfyui", "install", "--comfyui-dir", str(tmp_path)])
    assert bad.exit_code == 2
    assert "expected a ComfyUI folder (with main.py and custom_nodes/)" in bad.output


def test_defaults_without_a_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SONIC_REGISTRY_CONFIG", raising=False)
    config = load_config(tmp_path)
    assert config == PackConfig(source="defaults")
    assert config.action("mixed") == "refuse" and config.action("unknown") == "warn"


def test_guard_benchmark_runs_and_never_rehashes_unchanged_files(tmp_path: Path) -> None:
    """bench/comfyui_guard.py's in-process case: its shape, never a timing."""
    from bench.comfyui_guard import in_process

    stats, hashed, statuses = in_process(tmp_path, reps=3)
    assert list(stats) == ["validate_prompt without the pack", "validate_prompt with the guard"]
    assert all(s.reps == 3 for s in stats.values())
    assert hashed == 0
    assert statuses == {"1": "official", "4": "official", "5": "official"}


def test_a_published_file_name_and_size_with_other_bytes_is_tampered(world: World) -> None:
    """The built-in catalog knows the published RIFE/flownet.pkl (12,186,817 bytes)."""
    rife = world.models / "sonic" / "RIFE" / "flownet.pkl"
    rife.parent.mkdir()
    with rife.open("wb") as fh:
        fh.truncate(12_186_817)  # sparse: the published size, other bytes
    verdict = world.guard()
    (tampered,) = verdict.refused
    assert tampered.kind == "tampered" and tampered.nodes == ("14",)
    assert "sonic/RIFE/flownet.pkl has the name and size of sonic@2025.1.14" in tampered.message[0]
    world.config.write_text(world.config.read_text() + "builtin_catalog = false\n")
    assert [f.kind for f in world.guard().findings] == ["unknown"]


def test_async_node_functions_stay_async_and_locked(world: World, pack: glue.Pack) -> None:
    import asyncio
    import inspect

    class AsyncSampler:
        FUNCTION = "run"

        async def run(self) -> tuple[str]:
            return ("frames",)

    world.standin.nodes.NODE_CLASS_MAPPINGS["SONICSampler"] = AsyncSampler
    pack.wrap_sonic_nodes()
    assert inspect.iscoroutinefunction(AsyncSampler.run)
    world.standin.server.last_prompt_id = "never-approved"
    with pytest.raises(RuntimeError, match="was not checked by the release guard"):
        asyncio.run(AsyncSampler().run())
    pack.approved["ok"] = Verdict(())
    world.standin.server.last_prompt_id = "ok"
    assert asyncio.run(AsyncSampler().run()) == ("frames",)
