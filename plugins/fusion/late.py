"""Late fusion: the encoders' pooled vectors, each LayerNorm-ed, concatenated into an MLP head.

The baseline that study 000 contrasts with token fusion ("late fusion ... concatenated
prior to classification"): no token interacts with another across modalities, so it shows
how much of early fusion's gain needs token-level attention.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.types import EncoderOutput, FusionSpec, Register, TextInfo, VisionInfo

OPTIONS: dict[str, Any] = {"hidden_dim": 512, "dropout": 0.1}


class LateFusion(nn.Module):
    """forward(image, text) -> logits [B, num_classes] from [LN(image.pooled); LN(text.pooled)]."""

    def __init__(self, vision: VisionInfo, text: TextInfo, num_classes: int, hidden_dim: int, dropout: float) -> None:
        super().__init__()
        self.image_norm = nn.LayerNorm(vision.pooled_dim)
        self.text_norm = nn.LayerNorm(text.pooled_dim)
        self.mlp = nn.Sequential(
            nn.Linear(vision.pooled_dim + text.pooled_dim, hidden_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, num_classes),
        )

    def forward(self, image: EncoderOutput, text: EncoderOutput | None) -> torch.Tensor:
        if text is None:
            raise ValueError("fusion 'late' needs a caption per image, but the split has no captions")
        return self.mlp(torch.cat([self.image_norm(image.pooled), self.text_norm(text.pooled)], dim=-1))


def factory(vision: VisionInfo, text: TextInfo | None, num_classes: int | None, **options: Any) -> LateFusion:
    if not num_classes or text is None:
        raise UserError("fusion 'late' serves the classification objective with a text encoder: it needs num_classes and text.")
    return LateFusion(vision, text, num_classes, **{**OPTIONS, **options})


@hookimpl
def vlbench_register_fusions(register: Register) -> None:
    register(
        FusionSpec(
            name="late",
            factory=factory,
            description="Late fusion: pooled image and pooled text vectors (LayerNorm each) concatenated into an MLP head.",
            options=dict(OPTIONS),
            objectives=frozenset({"classification"}),
        )
    )
