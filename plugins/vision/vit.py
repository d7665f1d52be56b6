"""ViT (timm): plain vision transformers; one class token in front of the patch tokens.

SigLIP's image tower (study 004's baseline encoder) has no class token: it pools with an
attention head (``global_pool = "map"``), so its tokens are the 196 patches alone.
"""

from __future__ import annotations

from vlbench import hookimpl
from vlbench.plugins.vision._timm import timm_spec
from vlbench.types import Register


@hookimpl
def vlbench_register_vision_encoders(register: Register) -> None:
    register(timm_spec("vit_tiny_patch16_224", "ViT", "ViT-Ti/16, 5.5M backbone params (timm)", (224, 224)))
    register(timm_spec("vit_small_patch16_224", "ViT", "ViT-S/16, 21.7M backbone params (timm)", (224, 224)))
    register(
        timm_spec(
            "vit_base_patch16_siglip_224",
            "SigLIP",
            "SigLIP ViT-B/16 image tower at 224, the VLM encoder of study 004 (timm)",
            (224, 224),
        )
    )
