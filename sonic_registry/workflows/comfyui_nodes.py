"""What ComfyUI node types look like now: the files they load, their inputs and widgets.

Knowledge about node types, learnt from ComfyUI core and the ComfyUI_Sonic node
pack: which files a node loads and under which ``models/`` sub-folder, and the
current interface of each node (which tells an old ComfyUI_Sonic workflow from
a current one). :mod:`.comfyui` parses workflows with it; add a node type here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

__all__ = [
    "NODE_SPECS",
    "PARAM_TYPES",
    "SEED_CONTROLS",
    "SONIC_ROLES",
    "SONIC_TYPES",
    "SVD_LOADERS",
    "FileSlot",
    "NodeSpec",
    "name_widget_values",
]

#: Values the frontend stores after a seed widget ("control after generate").
SEED_CONTROLS = frozenset({"fixed", "increment", "decrement", "randomize"})


def name_widget_values(names: Iterable[str], raw: Sequence[Any]) -> tuple[dict[str, Any], int]:
    """A UI node's positional ``widgets_values`` named as the editor names them.

    Values take ``names`` in order; the "control after generate" value the frontend
    stores after every seed widget takes no name. Returns the named values and the
    position of the first value no name took. The workflow parser and the bench's
    UI-to-API conversion both call this, so they cannot name a widget differently.

    >>> name_widget_values(("seed", "steps"), [7, "fixed", 25, "extra"])
    ({'seed': 7, 'steps': 25}, 3)
    """
    values: dict[str, Any] = {}
    position = 0
    for name in names:
        if position >= len(raw):
            break
        values[name] = raw[position]
        position += 1
        if (
            name in ("seed", "noise_seed")
            and position < len(raw)
            and isinstance(raw[position], str)
            and raw[position] in SEED_CONTROLS
        ):
            position += 1
    return values, position


#: Parameters the resolver reports, with the numeric type the node declares.
PARAM_TYPES: Mapping[str, type] = MappingProxyType(
    {
        "seed": int,
        "inference_steps": int,
        "dynamic_scale": float,
        "fps": float,
        "duration": float,
        "min_resolution": int,
        "expand_ratio": float,
    }
)


@dataclass(frozen=True, slots=True)
class FileSlot:
    """A weight file a node loads: from a widget, or implicitly by a fixed name."""

    folder: str  # sub-folder of the ComfyUI models directory
    widget: str = ""  # the widget naming the file; "" for an implicit file
    name: str = ""  # the implicit file's name inside ``folder``
    role: str = ""  # the release role this slot must hold ("" = any)
    optional: bool = False  # checked only when present (loaded in some configurations)


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """What the *current* version of a node type looks like."""

    inputs: tuple[str, ...] = ()  # required linked inputs
    widgets: tuple[str, ...] = ()  # positional widget names, as the UI saves them
    outputs: tuple[str, ...] | None = None
    files: tuple[FileSlot, ...] = ()
    sonic: bool = False  # a ComfyUI_Sonic node: part of the pipeline we check
    passthrough: bool = False  # Reroute-like: forwards its single input


_FOLDER = "sonic"
NODE_SPECS: Mapping[str, NodeSpec] = MappingProxyType(
    {
        # ComfyUI_Sonic (smthemex/ComfyUI_Sonic sonic_node.py, interface since 2025-02-16).
        "SONICTLoader": NodeSpec(
            inputs=("model",),
            widgets=("sonic_unet", "ip_audio_scale", "use_interframe", "dtype"),
            outputs=("MODEL_SONIC", "DTYPE"),
            files=(
                FileSlot(_FOLDER, widget="sonic_unet", role="unet"),
                FileSlot(_FOLDER, name="RIFE/flownet.pkl", role="interpolator", optional=True),
            ),
            sonic=True,
        ),
        "SONIC_PreData": NodeSpec(
            inputs=("clip_vision", "vae", "audio", "image", "weight_dtype"),
            widgets=("min_resolution", "duration", "expand_ratio"),
            outputs=("SONIC_PREDATA",),
            files=(
                FileSlot(_FOLDER, name="audio2token.pth", role="audio_encoder"),
                FileSlot(_FOLDER, name="audio2bucket.pth", role="motion_decoder"),
                FileSlot(_FOLDER, name="yoloface_v5m.pt", role="face_detector", optional=True),
                # whisper-tiny/ is loaded from its fixed folder too (WhisperModel.from_pretrained).
                *(
                    FileSlot(_FOLDER, name=f"whisper-tiny/{name}", role="whisper", optional=True)
                    for name in ("config.json", "model.safetensors", "preprocessor_config.json")
                ),
            ),
            sonic=True,
        ),
        "SONICSampler": NodeSpec(
            inputs=("model", "data_dict"),
            widgets=("seed", "inference_steps", "dynamic_scale", "fps"),
            outputs=("IMAGE", "FLOAT"),
            sonic=True,
        ),
        # ComfyUI core loaders.
        "ImageOnlyCheckpointLoader": NodeSpec(
            widgets=("ckpt_name",),
            outputs=("MODEL", "CLIP_VISION", "VAE"),
            files=(FileSlot("checkpoints", widget="ckpt_name"),),
        ),
        "CheckpointLoaderSimple": NodeSpec(
            widgets=("ckpt_name",),
            outputs=("MODEL", "CLIP", "VAE"),
            files=(FileSlot("checkpoints", widget="ckpt_name"),),
        ),
        "CLIPVisionLoader": NodeSpec(
            widgets=("clip_name",),
            outputs=("CLIP_VISION",),
            files=(FileSlot("clip_vision", widget="clip_name"),),
        ),
        "VAELoader": NodeSpec(
            widgets=("vae_name",), outputs=("VAE",), files=(FileSlot("vae", widget="vae_name"),)
        ),
        "UNETLoader": NodeSpec(
            widgets=("unet_name", "weight_dtype"),
            outputs=("MODEL",),
            files=(FileSlot("diffusion_models", widget="unet_name"),),
        ),
        "CLIPLoader": NodeSpec(
            widgets=("clip_name", "type"),
            outputs=("CLIP",),
            files=(FileSlot("text_encoders", widget="clip_name"),),
        ),
        "LoraLoader": NodeSpec(
            inputs=("model", "clip"),
            widgets=("lora_name", "strength_model", "strength_clip"),
            outputs=("MODEL", "CLIP"),
            files=(FileSlot("loras", widget="lora_name"),),
        ),
        "Reroute": NodeSpec(passthrough=True),
        # Known nodes that load no weights.
        **{
            name: NodeSpec()
            for name in (
                "LoadImage",
                "LoadAudio",
                "SaveVideo",
                "CreateVideo",
                "SaveImage",
                "PreviewImage",
                "PreviewAudio",
                "SaveAudio",
                "CLIPTextEncode",
                "EmptyLatentImage",
                "KSampler",
                "KSamplerAdvanced",
                "VAEDecode",
                "VAEEncode",
                "Note",
                "MarkdownNote",
                "PrimitiveNode",
                "VHS_VideoCombine",
                "VHS_LoadAudio",
                "VHS_LoadAudioUpload",
                "VHS_LoadVideo",
            )
        },
    }
)

#: Loaders whose MODEL output is an SVD img2vid checkpoint, the base SONICTLoader needs.
SVD_LOADERS = frozenset({"ImageOnlyCheckpointLoader"})
SONIC_TYPES = frozenset(name for name, spec in NODE_SPECS.items() if spec.sonic)
SONIC_ROLES = frozenset(
    slot.role for spec in NODE_SPECS.values() if spec.sonic for slot in spec.files
)
