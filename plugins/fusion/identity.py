"""The identity fusion: the vision encoder's pooled features, L2-normalised; no parameters, no text.

For cost-only runs (the ``throughput`` task) that measure a vision encoder alone: the fusion
axis needs an entry, and this one adds nothing to the encoder's params, FLOPs or time beyond
one normalisation. It serves the embedding objective for images only (``uses_text=False``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vlbench import hookimpl
from vlbench.types import EncoderOutput, FusionSpec, Register, TextInfo, VisionInfo


class IdentityFusion(nn.Module):
    def __init__(self, vision: VisionInfo):
        super().__init__()
        self.dim = vision.pooled_dim
        self.register_buffer("_scale", torch.tensor(1.0), persistent=False)

    def embed_image(self, image: EncoderOutput) -> torch.Tensor:
        return F.normalize(image.pooled, dim=-1)

    def embed_text(self, text: EncoderOutput | None) -> torch.Tensor:
        raise RuntimeError("the identity fusion embeds images only (uses_text=False)")

    def logit_scale(self) -> torch.Tensor:
        return self._scale


def factory(vision: VisionInfo, text: TextInfo | None, num_classes: int | None, **options: Any) -> IdentityFusion:
    return IdentityFusion(vision)


@hookimpl
def vlbench_register_fusions(register: Register) -> None:
    register(
        FusionSpec(
            name="identity",
            factory=factory,
            description="No fusion: the vision encoder's pooled features, L2-normalised (encoder-only cost runs).",
            objectives=frozenset({"embedding"}),
            uses_text=False,
        )
    )
