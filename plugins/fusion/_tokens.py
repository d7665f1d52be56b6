"""Layers shared by the classification fusions: turning encoder tokens into D-wide tokens.

* :class:`TokenProjection`: LayerNorm + linear map to D, applied to every token; the
  MiniViTex recipe for text tokens and for ViT patch tokens.
* :class:`AttentionPoolTokenizer`: the MiniViTex CNN tokenizer (study 000, option A): the
  spatial tokens of a feature map with their mean prepended as a global pseudo-CLS, a
  learned positional embedding, self-attention layers at the backbone's width, LayerNorm,
  then a linear map to D.
"""

from __future__ import annotations

import torch
from torch import nn

from vlbench.errors import UserError
from vlbench.types import VisionInfo


class TokenProjection(nn.Module):
    """LayerNorm then Linear(in_dim -> dim), token-wise."""

    def __init__(self, in_dim: int, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.norm(tokens))


def spatial_token_count(vision: VisionInfo, who: str) -> int:
    """h * w of the encoder's spatial grid, or a UserError when it declares none."""
    if vision.grid_size is None:
        raise UserError(
            f"fusion {who!r}: the vision encoder declares no spatial grid (VisionInfo.grid_size is None), "
            f'so the number of image tokens is unknown. Use image_tokenizer = "linear" with an encoder '
            f"that declares its grid, or another vision encoder."
        )
    h, w = vision.grid_size
    return h * w


class AttentionPoolTokenizer(nn.Module):
    """Spatial tokens [B, h*w, C] -> [B, 1 + h*w, D]: mean token first, then the map.

    Each layer is residual self-attention (``x + MHA(LN(x))``), so an untrained tokenizer
    starts close to the identity and the backbone's features reach the fusion from step one.
    Prefix tokens (a ViT's class token) are dropped: the mean token takes their role.
    """

    def __init__(self, vision: VisionInfo, dim: int, layers: int, heads: int, who: str) -> None:
        super().__init__()
        channels = vision.token_dim
        if layers < 1 or heads < 1 or channels % heads:
            raise UserError(
                f"fusion {who!r}: the attention-pooling tokenizer needs pool_layers >= 1 and pool_heads "
                f"dividing the backbone width {channels}; got pool_layers={layers}, pool_heads={heads}."
            )
        self.prefix = vision.num_prefix_tokens
        self.n_tokens = 1 + spatial_token_count(vision, who)
        self.pos = nn.Parameter(torch.zeros(1, self.n_tokens, channels))
        nn.init.trunc_normal_(self.pos, std=0.02)
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(layers))
        self.attn = nn.ModuleList(nn.MultiheadAttention(channels, heads, batch_first=True) for _ in range(layers))
        self.out = TokenProjection(channels, dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        spatial = tokens[:, self.prefix :]
        if spatial.shape[1] + 1 != self.n_tokens:
            raise ValueError(
                f"the attention-pooling tokenizer was built for {self.n_tokens - 1} spatial tokens "
                f"(VisionInfo.grid_size) but got {spatial.shape[1]}"
            )
        x = torch.cat([spatial.mean(dim=1, keepdim=True), spatial], dim=1) + self.pos
        for norm, attn in zip(self.norms, self.attn, strict=True):
            h = norm(x)
            x = x + attn(h, h, h, need_weights=False)[0]
        return self.out(x)
