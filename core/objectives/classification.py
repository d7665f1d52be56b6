"""The classification objective: logits over a task's classes, from the image and maybe text.

=================================================== ========================================
a fusion implements                                 a task may call on VLModel
=================================================== ========================================
``forward(image: EncoderOutput, text: EncoderOutput  ``classify(images, TokenizedText | None)
| None) -> logits [B, C]``                          ``-> logits [B, C]``
=================================================== ========================================

The factory receives ``num_classes`` from the task (``Task.num_classes(dataset)``). Cost: the
fusion's share of a forward is ``forward``; the synthetic training loss is the mean squared logit.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vlbench.objectives.base import ObjectiveSpec
from vlbench.objectives.model import VLModel
from vlbench.types.encoders import EncoderOutput, TokenizedText


def fuse(model: VLModel, image: EncoderOutput, text: EncoderOutput | None) -> Any:
    return model.fusion(image, text)


def synthetic_loss(model: VLModel, images: torch.Tensor, text: TokenizedText | None) -> torch.Tensor:
    return model.classify(images, text).float().square().mean()


def check_fusion(fusion: nn.Module, image: EncoderOutput, words: EncoderOutput | None, num_classes: int, name: str) -> None:
    logits = fusion(image, words)
    batch = image.pooled.shape[0]
    assert tuple(logits.shape) == (batch, num_classes), f"{name}: logits {tuple(logits.shape)}"
    assert torch.isfinite(logits).all(), f"{name}: non-finite logits"
    logits.sum().backward()


CLASSIFICATION = ObjectiveSpec(
    name="classification",
    description="logits over the task's classes",
    fusion_methods={"forward": "(image: EncoderOutput, text: EncoderOutput | None) -> logits [B, C]"},
    model_methods={"classify": "(images, TokenizedText | None) -> logits [B, C]"},
    fuse=fuse,
    synthetic_loss=synthetic_loss,
    check_fusion=check_fusion,
    mock_task="mock_classification",
)
