"""Early token fusion (MiniViTex, study 000): one transformer over image and caption tokens.

The sequence is ``[multimodal CLS; image tokens; text tokens]`` with one learned positional
table shared by all positions, ``layers`` pre-LN transformer encoder layers (dropout only
inside attention and the feed-forward block) and a LayerNorm + linear head on the CLS output.
Every encoder token is first LayerNorm-ed and projected to ``dim``; the text CLS is an
ordinary token and padded text positions are masked out of attention.

Image tokens come from one of two tokenizers (``image_tokenizer``):

* ``"linear"``: every encoder token (prefix tokens included) through LayerNorm + linear;
  the study's choice for DeiT-S.
* ``"attention_pool"``: the CNN tokenizer of :mod:`._tokens` (mean token + spatial map,
  self-attention at the backbone width, then projection); the study's choice for
  EfficientNetV2-S and ResNet-50.
* ``"auto"`` (default): ``attention_pool`` for encoders without prefix tokens (CNN feature
  maps), ``linear`` for ViTs, so one suite can cross CNNs and ViTs with one fusion entry.

With ``text=None`` (the ``image_only`` fusion) the same model runs on ``[CLS; image tokens]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.plugins.fusion._tokens import AttentionPoolTokenizer, TokenProjection, spatial_token_count
from vlbench.types import EncoderOutput, FusionSpec, Register, TextInfo, VisionInfo

OPTIONS: dict[str, Any] = {
    "dim": 384,  # width D of every fused token
    "layers": 2,
    "heads": 4,
    "ff_dim": 1024,
    "dropout": 0.1,  # inside attention and feed-forward only
    "image_tokenizer": "auto",  # "auto", "linear" or "attention_pool"
    "pool_layers": 2,  # attention_pool: self-attention layers at the backbone width
    "pool_heads": 4,
}
TOKENIZERS = ("auto", "linear", "attention_pool")


class EarlyFusion(nn.Module):
    """forward(image, text | None) -> logits [B, num_classes]."""

    def __init__(
        self,
        vision: VisionInfo,
        text: TextInfo | None,
        num_classes: int,
        *,
        dim: int,
        layers: int,
        heads: int,
        ff_dim: int,
        dropout: float,
        image_tokenizer: str,
        pool_layers: int,
        pool_heads: int,
        who: str,
    ) -> None:
        super().__init__()
        if image_tokenizer not in TOKENIZERS:
            raise UserError(f"fusion {who!r}: image_tokenizer must be one of {list(TOKENIZERS)}, got {image_tokenizer!r}.")
        if dim % heads:
            raise UserError(f"fusion {who!r}: heads ({heads}) must divide dim ({dim}).")
        if image_tokenizer == "auto":
            image_tokenizer = "linear" if vision.num_prefix_tokens else "attention_pool"
        self.image_tokenizer = image_tokenizer
        self.who = who
        self.image_tokens: nn.Module
        if image_tokenizer == "attention_pool":
            pool = AttentionPoolTokenizer(vision, dim, pool_layers, pool_heads, who)
            self.image_tokens, n_image = pool, pool.n_tokens
        else:
            self.image_tokens = TokenProjection(vision.token_dim, dim)
            n_image = vision.num_prefix_tokens + spatial_token_count(vision, who)
        self.text_tokens = TokenProjection(text.token_dim, dim) if text is not None else None
        n_text = text.max_length if text is not None else 0
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, 1 + n_image + n_text, dim))
        nn.init.trunc_normal_(self.cls, std=0.02)
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, ff_dim, dropout, activation="gelu", batch_first=True, norm_first=True)
        # Nested tensors only speed up inference with heavy padding, and they need norm_first=False.
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, image: EncoderOutput, text: EncoderOutput | None) -> torch.Tensor:
        image_tokens = self.image_tokens(image.tokens)
        batch, device = image_tokens.shape[0], image_tokens.device
        parts = [self.cls.expand(batch, -1, -1), image_tokens]
        real = [torch.ones(batch, 1, dtype=torch.bool, device=device)]
        # The attention-pool tokenizer mixes every position, so only the linear path keeps an image mask.
        if image.mask is not None and self.image_tokenizer == "linear":
            real.append(image.mask)
        else:
            real.append(torch.ones(image_tokens.shape[:2], dtype=torch.bool, device=device))
        if self.text_tokens is not None:
            if text is None:
                raise ValueError(
                    f"fusion {self.who!r} was built with a text branch but got no text: the split has no "
                    f"captions. Use the image_only fusion for caption-less data."
                )
            parts.append(self.text_tokens(text.tokens))
            real.append(
                text.mask if text.mask is not None else torch.ones(text.tokens.shape[:2], dtype=torch.bool, device=device)
            )
        x = torch.cat(parts, dim=1)
        if x.shape[1] > self.pos.shape[1]:
            raise ValueError(
                f"fusion {self.who!r}: {x.shape[1]} tokens exceed the {self.pos.shape[1]} positions it was built "
                f"for (1 CLS + {image_tokens.shape[1]} image + TextInfo.max_length text)"
            )
        x = self.encoder(x + self.pos[:, : x.shape[1]], src_key_padding_mask=~torch.cat(real, dim=1))
        return self.head(self.norm(x[:, 0]))


def build(vision: VisionInfo, text: TextInfo | None, num_classes: int | None, *, who: str, **options: Any) -> EarlyFusion:
    if not num_classes:
        raise UserError(f"fusion {who!r} serves the classification objective: the task must give num_classes.")
    return EarlyFusion(vision, text, num_classes, who=who, **{**OPTIONS, **options})


def factory(vision: VisionInfo, text: TextInfo | None, num_classes: int | None, **options: Any) -> EarlyFusion:
    return build(vision, text, num_classes, who="early", **options)


@hookimpl
def vlbench_register_fusions(register: Register) -> None:
    register(
        FusionSpec(
            name="early",
            factory=factory,
            description=(
                "MiniViTex early token fusion: [CLS; image tokens; caption tokens], shared positions, "
                "2-layer transformer, LN + linear head on the CLS (study 000)."
            ),
            options=dict(OPTIONS),
            objectives=frozenset({"classification"}),
        )
    )
