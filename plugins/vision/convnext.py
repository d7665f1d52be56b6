"""ConvNeXt (timm): modernised ResNets; pooled output passes the head's LayerNorm."""

from __future__ import annotations

from vlbench import hookimpl
from vlbench.plugins.vision._timm import timm_spec
from vlbench.types import Register


@hookimpl
def vlbench_register_vision_encoders(register: Register) -> None:
    register(timm_spec("convnext_atto", "ConvNeXt", "ConvNeXt-Atto, 3.4M backbone params (timm)", (224, 224)))
    register(timm_spec("convnext_tiny", "ConvNeXt", "ConvNeXt-T, 27.8M backbone params (timm)", (224, 224)))
