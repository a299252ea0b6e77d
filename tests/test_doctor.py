"""doctor: a real-looking ComfyUI / Sonic models folder, one row per weight file."""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import Keys
from sonic_install import dice_release, install, make_registry, sonic_release

from sonic_registry.cli import main
from sonic_registry.doctor import diagnose, find_weight_files
from sonic_registry.trust import TrustStore


def _layout(
    tmp_path: Path, make_bundle: Callable[..., Path], trust_file: Path, community_key: Keys
) -> tuple[Path, Path]:
    v12 = sonic_release(make_bundle, "v12", version="1.2.0", step=50000)
    v13 = sonic_release(make_bundle, "v13", version="1.3.0", step=80000)
    dice = dice_release(make_bundle, community_key, files={"unet": "unet.pth"})
    make_registry(tmp_path / "reg", trust_file, [v12, v13, dice]).close()
    # A Sonic checkout layout: checkpoints/Sonic/*.pth, RIFE, SVD folder.
    models = tmp_path / "checkpoints"
    (models / "Sonic").mkdir(parents=True)
    for name in ("unet.pth", "audio2bucket.pth"):
        shutil.copyfile(v13 / name, models / "Sonic" / name)
    shutil.copyfile(v12 / "audio2token.pth", models / "Sonic/audio2token.pth")  # mixed
    (models / "RIFE").mkdir()
    (models / "RIFE/flownet.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=2))
    svd = models / "stable-video-diffusion-img2vid-xt/unet"
    svd.mkdir(parents=True)
    shutil.copyfile(v13 / "svd_xt_1_1.safetensors", svd / "diffusion_pytorch_model.safetensors")
    (svd / "config.json").write_text("{}")
    shutil.copyfile(dice / "unet.pth", models / "dice_unet.pth")
    return tmp_path / "reg", models


def test_doctor_rows_per_file(
    tmp_path: Path, make_bundle: Callable[..., Path], trust_file: Path, community_key: Keys
) -> None:
    from sonic_registry.registry import Registry

    reg_dir, models = _layout(tmp_path, make_bundle, trust_file, community_key)
    assert [p.name for p in find_weight_files(models)] == [
        "dice_unet.pth",
        "flownet.pkl",
        "audio2bucket.pth",
        "audio2token.pth",
        "unet.pth",
        "diffusion_pytorch_model.safetensors",
    ]
    report = diagnose(models, Registry(reg_dir, TrustStore.load(trust_file)))
    rows = {r.rel: r.to_dict() for r in report.rows}
    assert rows["Sonic/unet.pth"]["release_id"] == "sonic@1.3.0#1"
    assert rows["Sonic/unet.pth"]["action"] == "ok" and not rows["Sonic/unet.pth"]["problem"]
    assert rows["Sonic/audio2token.pth"]["problem"]
    assert "from sonic 1.2.0 beside sonic 1.3.0" in rows["Sonic/audio2token.pth"]["action"]
    assert rows["RIFE/flownet.pkl"]["status"] == "unknown"
    assert rows["RIFE/flownet.pkl"]["format"] == "pickle"
    assert rows["dice_unet.pth"]["status"] == "community"
    assert "community (non-official) release" in rows["dice_unet.pth"]["action"]
    svd = rows["stable-video-diffusion-img2vid-xt/unet/diffusion_pytorch_model.safetensors"]
    assert svd["role"] == "svd"
    assert not report.ok


def test_doctor_cli_table_and_json(
    tmp_path: Path, make_bundle: Callable[..., Path], trust_file: Path, community_key: Keys
) -> None:
    reg_dir, models = _layout(tmp_path, make_bundle, trust_file, community_key)
    common = ["--registry", str(reg_dir), "--trust", str(trust_file)]
    runner = CliRunner()
    out = runner.invoke(main, ["doctor", str(models), *common])
    assert out.exit_code == 1, out.output
    for text in (
        "Sonic/unet.pth",
        "sonic@1.3.0#1",
        "official",
        "unknown",
        "pickle",
        "RIFE/flownet.pkl",
    ):
        assert text in out.stdout
    assert out.stderr == ""  # no progress bar when stdout is not a terminal
    data = json.loads(runner.invoke(main, ["doctor", str(models), *common, "--json"]).stdout)
    assert data["ok"] is False and len(data["files"]) == 6


def test_doctor_clean_comfyui_install_exit_0(
    tmp_path: Path, make_bundle: Callable[..., Path], trust_file: Path
) -> None:
    v13 = sonic_release(make_bundle, "v13", version="1.3.0", step=80000)
    make_registry(tmp_path / "reg", trust_file, [v13]).close()
    models = install(v13, tmp_path / "ComfyUI/models")
    out = CliRunner().invoke(
        main,
        [
            "doctor",
            str(models),
            "--registry",
            str(tmp_path / "reg"),
            "--trust",
            str(trust_file),
            "--json",
        ],
    )
    assert out.exit_code == 0, out.output
    assert {f["path"] for f in json.loads(out.stdout)["files"]} == {
        "sonic/unet.pth",
        "sonic/audio2token.pth",
        "sonic/audio2bucket.pth",
        "checkpoints/svd_xt_1_1.safetensors",
        "checkpoints/video/svd_xt_1_1.safetensors",
    }


def test_doctor_missing_folder_exit_2(tmp_path: Path, trust_file: Path) -> None:
    out = CliRunner().invoke(
        main,
        ["doctor", str(tmp_path / "none"), "--registry", str(tmp_path), "--trust", str(trust_file)],
    )
    assert out.exit_code == 2 and "expected a models folder" in out.stderr


def test_progress_bar_only_for_big_jobs_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from sonic_registry.cli import registry as cli_registry
    from sonic_registry.cli._common import progress_bar

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    def doctor_bar(total: int):  # as `doctor` asks for it: the bar follows stdout
        return progress_bar(
            total, "hashing", min_bytes=cli_registry.DOCTOR_PROGRESS_BYTES, terminal=sys.stdout
        )

    with doctor_bar(1 << 40) as progress:
        assert progress is None  # stdout is not a terminal under pytest
    monkeypatch.setattr(sys, "stdout", Tty())
    with doctor_bar(10) as progress:
        assert progress is None  # too small to bother
    with doctor_bar(cli_registry.DOCTOR_PROGRESS_BYTES) as progress:
        assert progress is not None
        progress(1024)
