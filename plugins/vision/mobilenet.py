"""MobileNetV3 and MobileNetV2 (timm): the mobile CNN baselines.

MobileNetV3's tokens are the 960/576-channel last stage, its pooled output the wider
conv head after global pooling (large: 1280, small: 1024).
"""

from __future__ import annotations

from vlbench import hookimpl
from vlbench.plugins.vision._timm import timm_spec
from vlbench.types import Register


@hookimpl
def vlbench_register_vision_encoders(register: Register) -> None:
    register(timm_spec("mobilenetv3_small_100", "MobileNetV3", "MobileNetV3-Small 1.0, 1.5M backbone params (timm)", (224, 224)))
    register(timm_spec("mobilenetv3_large_100", "MobileNetV3", "MobileNetV3-Large 1.0, 4.2M backbone params (timm)", (224, 224)))
    register(timm_spec("mobilenetv2_100", "MobileNetV2", "MobileNetV2 1.0, 2.2M backbone params (timm)", (224, 224)))
