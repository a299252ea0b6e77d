"""A stand-in for the ComfyUI_Sonic node pack, for the end-to-end test only.

It registers ComfyUI_Sonic's three node types (SONICTLoader, SONIC_PreData,
SONICSampler) with their real inputs, widget ranges and outputs
(smthemex/ComfyUI_Sonic, interface since 2025-02-16), and the ``sonic`` model
folder, but does no model work: the sampler repeats the input image. Because
core ``ImageOnlyCheckpointLoader`` would build an SVD model from the
checkpoint, its function is replaced by one that returns placeholders (its
inputs, and so ComfyUI's validation of ``ckpt_name``, stay real).
"""

import os

import folder_paths
import nodes
import torch

folder_paths.add_model_folder_path("sonic", os.path.join(folder_paths.models_dir, "sonic"))
MAX_SEED = 2147483647


class SONICLoader:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "sonic_unet": (["none", *folder_paths.get_filename_list("sonic")],),
                "ip_audio_scale": ("FLOAT", {"default": 1.0, "min": 0.5, "max": 2.0, "step": 0.1}),
                "use_interframe": ("BOOLEAN", {"default": True}),
                "dtype": (["fp16", "fp32", "bf16"],),
            }
        }

    RETURN_TYPES = ("MODEL_SONIC", "DTYPE")
    RETURN_NAMES = ("model", "weight_dtype")
    FUNCTION = "loader_main"
    CATEGORY = "SONIC"

    def loader_main(self, model, sonic_unet, ip_audio_scale, use_interframe, dtype):
        return ({"unet": sonic_unet, "interframe": use_interframe}, dtype)


class SONIC_PreData:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip_vision": ("CLIP_VISION",),
                "vae": ("VAE",),
                "audio": ("AUDIO",),
                "image": ("IMAGE",),
                "weight_dtype": ("DTYPE",),
                "min_resolution": ("INT", {"default": 512, "min": 128, "max": 2048, "step": 64}),
                "duration": (
                    "FLOAT",
                    {"default": 10.0, "min": 1.0, "max": 100000000000, "step": 0.1},
                ),
                "expand_ratio": ("FLOAT", {"default": 0.5, "min": 0.1, "max": 1.0, "step": 0.1}),
            }
        }

    RETURN_TYPES = ("SONIC_PREDATA",)
    RETURN_NAMES = ("data_dict",)
    FUNCTION = "sampler_main"
    CATEGORY = "SONIC"

    def sampler_main(
        self, clip_vision, vae, audio, image, weight_dtype, min_resolution, duration, expand_ratio
    ):
        for name in ("audio2token.pth", "audio2bucket.pth"):
            if not os.path.isfile(os.path.join(folder_paths.models_dir, "sonic", name)):
                raise Exception("Please download the model first")
        return ({"image": image, "audio": audio, "duration": duration},)


class SONICSampler:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL_SONIC",),
                "data_dict": ("SONIC_PREDATA",),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED}),
                "inference_steps": ("INT", {"default": 25, "min": 1, "max": 1024, "step": 1}),
                "dynamic_scale": ("FLOAT", {"default": 1.0, "min": 0.5, "max": 2.0, "step": 0.1}),
                "fps": ("FLOAT", {"default": 25.0, "min": 5.0, "max": 120.0, "step": 0.5}),
            }
        }

    RETURN_TYPES = ("IMAGE", "FLOAT")
    RETURN_NAMES = ("image", "fps")
    FUNCTION = "sampler_main"
    CATEGORY = "SONIC"

    def sampler_main(self, model, data_dict, seed, inference_steps, dynamic_scale, fps):
        image = data_dict["image"][:1, :64, :64, :]
        return (torch.cat([image] * 4, dim=0), fps)


def _placeholder_checkpoint(self, ckpt_name, output_vae=True, output_clip=True):
    folder_paths.get_full_path_or_raise("checkpoints", ckpt_name)
    return ("svd-model", "clip-vision", "vae")


nodes.NODE_CLASS_MAPPINGS["ImageOnlyCheckpointLoader"].load_checkpoint = _placeholder_checkpoint

NODE_CLASS_MAPPINGS = {
    "SONICTLoader": SONICLoader,
    "SONIC_PreData": SONIC_PreData,
    "SONICSampler": SONICSampler,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SONICTLoader": "SONICTLoader",
    "SONIC_PreData": "SONIC_PreData",
    "SONICSampler": "SONICSampler",
}
