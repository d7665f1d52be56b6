"""What encoders return and declare: :class:`EncoderOutput`, the :class:`VisionInfo` /
:class:`TextInfo` a fusion is built from, tokenized text, and the two encoder base classes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class EncoderOutput:
    tokens: torch.Tensor  # [B, N, token_dim]; CNN maps flattened row-major after any prefix tokens
    pooled: torch.Tensor  # [B, pooled_dim]; the encoder's own global summary
    mask: torch.Tensor | None = None  # [B, N] bool, True = real token; None = all real


@dataclass(frozen=True)
class VisionInfo:
    token_dim: int  # width of EncoderOutput.tokens
    pooled_dim: int  # width of EncoderOutput.pooled (may differ, e.g. MobileNetV3 960 vs 1280)
    input_size: tuple[int, int]  # (H, W) the encoder is built for
    mean: tuple[float, float, float]  # normalisation the weights expect
    std: tuple[float, float, float]
    num_prefix_tokens: int = 0  # ViT class/register tokens in front of the patch tokens
    grid_size: tuple[int, int] | None = None  # (h, w) of the spatial tokens, when spatial


@dataclass(frozen=True)
class TextInfo:
    token_dim: int
    pooled_dim: int
    max_length: int  # tokenizer pads/truncates to this many tokens


@dataclass(frozen=True)
class TokenizedText:
    input_ids: torch.Tensor  # [B, max_length] int64
    attention_mask: torch.Tensor  # [B, max_length] bool, True = real token

    def to(self, device: torch.device | str) -> TokenizedText:
        return TokenizedText(self.input_ids.to(device), self.attention_mask.to(device))

    def __len__(self) -> int:
        return self.input_ids.shape[0]


class VisionEncoder(nn.Module):
    """Base for vision encoders: ``forward(images [B,3,H,W]) -> EncoderOutput``."""

    info: VisionInfo
    # Where loaded pretrained weights came from (package, version, file, sha256), for the
    # record; None for random init or weights whose source vlbench cannot name.
    weights_provenance: Mapping[str, Any] | None = None

    def forward(self, images: torch.Tensor) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError


class TextEncoder(nn.Module):
    """Base for text encoders; each owns its tokenizer."""

    info: TextInfo

    def tokenize(self, texts: Sequence[str]) -> TokenizedText:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, text: TokenizedText) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError
