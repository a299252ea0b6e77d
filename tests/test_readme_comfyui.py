"""The README's ComfyUI session, rerun from the README's own text so the two cannot drift.

The models folder is built as the README describes it: a git clone of a Sonic
mirror without git-lfs (pointers with the real published oids and sizes), an
SD1.5 checkpoint, a LoRA, an SVD file that is not the published one, and a
ComfyUI_DICE_Talk-shaped ``unet.pth`` (two audio IP-adapter key sets).
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from sonic_install import WORKFLOWS
from test_catalog import PUBLISHED
from test_readme import readme_block

from sonic_registry.cli import main
from sonic_registry.lfs import format_pointer


def build_models(root: Path) -> None:
    import torch
    from safetensors.torch import save_file

    for role, rel in {
        "audio_encoder": "sonic/audio2token.pth",
        "motion_decoder": "sonic/audio2bucket.pth",
        "face_detector": "sonic/yoloface_v5m.pt",
        "interpolator": "sonic/RIFE/flownet.pkl",
    }.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(format_pointer(*PUBLISHED[role]))
    key = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.processor.to_k_ip.{}.weight"
    torch.manual_seed(0)
    torch.save({key.format(i): torch.randn(8) for i in (0, 1)}, root / "sonic/unet.pth")
    (root / "checkpoints").mkdir(parents=True)
    (root / "loras").mkdir(parents=True)
    save_file(
        {"w": torch.arange(16, dtype=torch.float32)},
        str(root / "checkpoints/v1-5-pruned-emaonly.safetensors"),
    )
    save_file({"lora_up": torch.ones(4)}, str(root / "loras/add_detail.safetensors"))
    save_file({"svd": torch.zeros(4)}, str(root / "checkpoints/svd_xt_1_1.safetensors"))


def test_readme_comfyui_session_is_real_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_models(tmp_path / "ComfyUI/models")
    shutil.copyfile(WORKFLOWS / "smthemex-ComfyUI_Sonic/example.json", tmp_path / "example.json")
    monkeypatch.chdir(tmp_path)
    session = readme_block("## A ComfyUI user checks their models folder (no set-up)", "console")
    commands = session.split("$ ")[1:]
    assert len(commands) >= 4
    last = 0
    for chunk in commands:
        command, _, expected = chunk.partition("\n")
        if command == "echo $?":
            assert expected.strip() == str(last)
            continue
        argv = shlex.split(command)
        assert argv[0] == "sonic-registry"
        result = CliRunner().invoke(main, argv[1:], catch_exceptions=False)
        last = result.exit_code
        got = [line.rstrip() for line in result.output.splitlines()]
        assert got == expected.rstrip("\n").splitlines(), command
        assert last == 1  # each command in the session finds something to fix
