"""The embedding objective: images and captions in one space (retrieval, zero-shot).

================================================ ==========================================
a fusion implements                              a task may call on VLModel
================================================ ==========================================
``embed_image(EncoderOutput) -> [B, E]`` unit    ``encode_image(images) -> [B, E]``
``embed_text(EncoderOutput) -> [B, E]`` unit     ``encode_text(TokenizedText) -> [B, E]``
``logit_scale() -> scalar tensor`` (> 0)         ``logit_scale()``
================================================ ==========================================

Cost: the fusion's share of a forward is ``embed_image`` and, with a text encoder,
``embed_text``; the synthetic training loss is CLIP's symmetric InfoNCE.
"""

from __future__ import annotations

from typing import Any

import torch

from vlbench.objectives.base import ObjectiveSpec
from vlbench.objectives.model import VLModel, symmetric_info_nce
from vlbench.types.encoders import EncoderOutput, TokenizedText


def fuse(model: VLModel, image: EncoderOutput, text: EncoderOutput | None) -> Any:
    return model.fusion.embed_image(image), None if text is None else model.fusion.embed_text(text)


def synthetic_loss(model: VLModel, images: torch.Tensor, text: TokenizedText | None) -> torch.Tensor:
    assert text is not None, "a contrastive objective pairs images with captions"
    return symmetric_info_nce(model.encode_image(images), model.encode_text(text), model.logit_scale())


def check_fusion(fusion: Any, image: EncoderOutput, words: EncoderOutput | None, num_classes: int, name: str) -> None:
    """Unit-norm embeddings of one width, a positive scalar scale, gradients to the image side."""
    emb_i = fusion.embed_image(image)
    batch = image.pooled.shape[0]
    assert emb_i.ndim == 2 and emb_i.shape[0] == batch, f"{name}: image embeddings {tuple(emb_i.shape)}"
    assert torch.allclose(emb_i.norm(dim=-1), torch.ones(batch), atol=1e-4), f"{name}: image embeddings not unit norm"
    scale = fusion.logit_scale()
    assert scale.ndim == 0 and scale.item() > 0, f"{name}: logit_scale must be a positive scalar"
    if words is None:  # image-only embedding (uses_text=False)
        (emb_i * torch.randn_like(emb_i) * scale).sum().backward()
        return
    emb_t = fusion.embed_text(words)
    assert emb_i.shape == emb_t.shape, f"{name}: embeddings {tuple(emb_i.shape)} vs {tuple(emb_t.shape)}"
    assert torch.allclose(emb_t.norm(dim=-1), torch.ones(batch), atol=1e-4), f"{name}: text embeddings not unit norm"
    (emb_i @ emb_t.t() * scale).sum().backward()


EMBEDDING = ObjectiveSpec(
    name="embedding",
    description="image and caption embeddings in one space, compared by a scaled dot product",
    fusion_methods={
        "embed_image": "EncoderOutput -> [B, E] unit norm",
        "embed_text": "EncoderOutput -> [B, E] unit norm",
        "logit_scale": "() -> positive scalar tensor",
    },
    model_methods={
        "encode_image": "images [B,3,H,W] -> [B, E]",
        "encode_text": "TokenizedText -> [B, E]",
        "logit_scale": "() -> scalar tensor",
    },
    fuse=fuse,
    synthetic_loss=synthetic_loss,
    check_fusion=check_fusion,
    mock_task="mock_retrieval",
    mock_task_needs_text=True,  # it embeds captions
)
