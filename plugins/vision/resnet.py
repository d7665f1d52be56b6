"""ResNet (timm): the classic CNN baseline."""

from __future__ import annotations

from vlbench import hookimpl
from vlbench.plugins.vision._timm import timm_spec
from vlbench.types import Register


@hookimpl
def vlbench_register_vision_encoders(register: Register) -> None:
    register(timm_spec("resnet50", "ResNet", "ResNet-50, 23.5M backbone params (timm)", (224, 224)))
