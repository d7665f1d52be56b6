"""DeiT (timm): data-efficient ViTs; one class token in front of the patch tokens."""

from __future__ import annotations

from vlbench import hookimpl
from vlbench.plugins.vision._timm import timm_spec
from vlbench.types import Register


@hookimpl
def vlbench_register_vision_encoders(register: Register) -> None:
    register(timm_spec("deit_tiny_patch16_224", "DeiT", "DeiT-Ti/16, 5.5M backbone params (timm)", (224, 224)))
    register(timm_spec("deit_small_patch16_224", "DeiT", "DeiT-S/16, 21.7M backbone params (timm)", (224, 224)))
