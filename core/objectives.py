"""Objectives: how fusions and tasks meet.

A fusion module never holds the encoders: it receives their :class:`EncoderOutput` and
owns only its projections and heads. :class:`VLModel` composes vision encoder, text encoder
and fusion, and offers each objective's methods to tasks:

============== ============================================== =========================
objective      a fusion module implements                     a task calls on VLModel
============== ============================================== =========================
embedding      embed_image(EncoderOutput) -> [B, E] unit norm encode_image(images)
               embed_text(EncoderOutput) -> [B, E] unit norm  encode_text(TokenizedText)
               logit_scale() -> scalar tensor                 logit_scale()
classification forward(image: EncoderOutput,                  classify(images, text)
               text: EncoderOutput | None) -> logits [B, C]
============== ============================================== =========================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vlbench.types import TextEncoder, TokenizedText, VisionEncoder


class VLModel(nn.Module):
    """The model a task trains and evaluates: ``vision``, ``text`` (or None) and ``fusion``."""

    def __init__(self, vision: VisionEncoder, text: TextEncoder | None, fusion: nn.Module):
        super().__init__()
        self.vision = vision
        self.text = text
        self.fusion = fusion

    def components(self) -> dict[str, nn.Module]:
        parts = {"vision": self.vision, "text": self.text, "fusion": self.fusion}
        return {name: module for name, module in parts.items() if module is not None}

    def tokenize(self, texts: list[str]) -> TokenizedText:
        if self.text is None:
            raise RuntimeError("this model has no text encoder")
        return self.text.tokenize(texts)

    # embedding objective
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.fusion.embed_image(self.vision(images))

    def encode_text(self, text: TokenizedText) -> torch.Tensor:
        return self.fusion.embed_text(self.text(text))

    def logit_scale(self) -> torch.Tensor:
        return self.fusion.logit_scale()

    # classification objective
    def classify(self, images: torch.Tensor, text: TokenizedText | None) -> torch.Tensor:
        text_out = self.text(text) if self.text is not None and text is not None else None
        return self.fusion(self.vision(images), text_out)


def symmetric_info_nce(
    image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor
) -> torch.Tensor:
    """CLIP's loss: mean of image->text and text->image cross-entropy over the batch.

    Row i of each side is the positive pair. At initialisation it is about ln(B).
    """
    logits = logit_scale * image_emb @ text_emb.t()
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
