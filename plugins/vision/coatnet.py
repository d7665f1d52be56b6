"""CoAtNet (timm's maxxvit): conv stages then relative-attention stages.

The attention stages are sized from ``img_size`` at build time, so a run's size (square or
not) must have sides that are multiples of 32.
"""

from __future__ import annotations

from vlbench import hookimpl
from vlbench.plugins.vision._timm import timm_spec
from vlbench.types import Register


@hookimpl
def vlbench_register_vision_encoders(register: Register) -> None:
    register(timm_spec("coatnet_0_rw_224", "CoAtNet", "CoAtNet-0 (rw variant), 26.7M backbone params (timm)", (224, 224)))
    register(timm_spec("coatnet_nano_rw_224", "CoAtNet", "CoAtNet-nano (rw variant), 14.6M backbone params (timm)", (224, 224)))
