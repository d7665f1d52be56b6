"""The image-only ablation of early fusion (study 000): the same model, the caption branch off.

``uses_text=False`` makes the run build no text encoder at all, so its parameter count and
cost are the image path's alone, and the fusion runs on ``[CLS; image tokens]``. Selectable
on the fusions axis next to ``early``, one suite yields the study's ablation table.
"""

from __future__ import annotations

from typing import Any

from vlbench import hookimpl
from vlbench.plugins.fusion.early import OPTIONS, EarlyFusion, build
from vlbench.types import FusionSpec, Register, TextInfo, VisionInfo


def factory(vision: VisionInfo, text: TextInfo | None, num_classes: int | None, **options: Any) -> EarlyFusion:
    return build(vision, None, num_classes, who="image_only", **options)


@hookimpl
def vlbench_register_fusions(register: Register) -> None:
    register(
        FusionSpec(
            name="image_only",
            factory=factory,
            description="Early fusion with the caption branch off: [CLS; image tokens] -> transformer -> head (study 000 ablation).",
            options=dict(OPTIONS),
            objectives=frozenset({"classification"}),
            uses_text=False,
        )
    )
