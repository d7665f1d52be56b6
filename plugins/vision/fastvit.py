"""FastViT (timm): reparameterisable conv/attention hybrid; fully convolutional, any size."""

from __future__ import annotations

from vlbench import hookimpl
from vlbench.plugins.vision._timm import timm_spec
from vlbench.types import Register


@hookimpl
def vlbench_register_vision_encoders(register: Register) -> None:
    register(timm_spec("fastvit_t8", "FastViT", "FastViT-T8, 3.3M backbone params (timm)", (256, 256)))
    register(timm_spec("fastvit_sa12", "FastViT", "FastViT-SA12, 10.6M backbone params (timm)", (256, 256)))
