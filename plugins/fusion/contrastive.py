"""CLIP-style dual-encoder fusion: pool each tower, project to a shared space, L2-normalise.

Serves the ``embedding`` objective (see :mod:`vlbench.objectives`): ``embed_image`` and
``embed_text`` give unit vectors and ``logit_scale`` the inverse temperature that multiplies
their cosine similarities in the contrastive loss.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.types import EncoderOutput, FusionSpec, Register, TextInfo, VisionInfo

POOLS = ("pooled", "mean")
PROJECTIONS = ("linear", "mlp")
MAX_LOGIT_SCALE = 100.0  # CLIP's clamp on the learnable scale, against training instability


def _projection(kind: str, in_dim: int, embed_dim: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, embed_dim)
    # The hidden layer keeps the encoder's width so the head only adds a non-linearity.
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.GELU(), nn.Linear(in_dim, embed_dim))


def _masked_mean(tokens: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return tokens.mean(1)
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    return (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class ContrastiveFusion(nn.Module):
    def __init__(
        self,
        vision: VisionInfo,
        text: TextInfo,
        *,
        embed_dim: int,
        temperature: float,
        learnable_temperature: bool,
        pool: str,
        projection: str,
    ):
        super().__init__()
        self.pool = pool
        # Prefix (class/register) tokens are not patches: a patch mean leaves them out, as
        # timm's global average pooling does.
        self.num_prefix_tokens = vision.num_prefix_tokens
        image_dim = vision.pooled_dim if pool == "pooled" else vision.token_dim
        text_dim = text.pooled_dim if pool == "pooled" else text.token_dim
        self.image_proj = _projection(projection, image_dim, embed_dim)
        self.text_proj = _projection(projection, text_dim, embed_dim)
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if learnable_temperature:
            # Log-parameterised like CLIP, so the scale stays positive under any update.
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale)
        self.learnable_temperature = learnable_temperature

    def _pool(self, out: EncoderOutput, skip: int) -> torch.Tensor:
        if self.pool == "pooled":
            return out.pooled
        mask = None if out.mask is None else out.mask[:, skip:]
        return _masked_mean(out.tokens[:, skip:], mask)

    def embed_image(self, out: EncoderOutput) -> torch.Tensor:
        return F.normalize(self.image_proj(self._pool(out, self.num_prefix_tokens)), dim=-1)

    def embed_text(self, out: EncoderOutput) -> torch.Tensor:
        return F.normalize(self.text_proj(self._pool(out, 0)), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        scale = self.log_scale.exp()
        return scale.clamp(max=MAX_LOGIT_SCALE) if self.learnable_temperature else scale


def build(
    vision: VisionInfo,
    text: TextInfo | None,
    num_classes: int | None = None,  # the embedding objective has no classes
    *,
    embed_dim: int = 256,
    temperature: float = 0.02,
    learnable_temperature: bool = True,
    pool: str = "pooled",
    projection: str = "linear",
) -> ContrastiveFusion:
    if text is None:
        raise UserError("fusion 'contrastive' needs a text encoder (it aligns images with captions)")
    if pool not in POOLS:
        raise UserError(f"fusion 'contrastive': option pool={pool!r}; use one of {POOLS}")
    if projection not in PROJECTIONS:
        raise UserError(f"fusion 'contrastive': option projection={projection!r}; use one of {PROJECTIONS}")
    if embed_dim < 1:
        raise UserError(f"fusion 'contrastive': option embed_dim={embed_dim}; use a positive integer")
    if temperature <= 0:
        raise UserError(f"fusion 'contrastive': option temperature={temperature}; use a positive number")
    if learnable_temperature and 1.0 / temperature > MAX_LOGIT_SCALE:
        raise UserError(
            f"fusion 'contrastive': temperature={temperature} starts the learnable scale at "
            f"{1.0 / temperature:g}, above its clamp {MAX_LOGIT_SCALE:g}; use temperature >= "
            f"{1.0 / MAX_LOGIT_SCALE} or learnable_temperature=false"
        )
    return ContrastiveFusion(
        vision,
        text,
        embed_dim=embed_dim,
        temperature=temperature,
        learnable_temperature=learnable_temperature,
        pool=pool,
        projection=projection,
    )


@hookimpl
def vlbench_register_fusions(register: Register) -> None:
    register(
        FusionSpec(
            name="contrastive",
            factory=build,
            description=(
                "CLIP-style dual encoder: pooled or masked-mean features of each tower, a linear "
                "or MLP projection to a shared space, L2-normalised; temperature fixed or learnable."
            ),
            options={
                "embed_dim": 256,
                "temperature": 0.02,  # IRRA's initial temperature
                "learnable_temperature": True,
                "pool": "pooled",
                "projection": "linear",
            },
            objectives=frozenset({"embedding"}),
            uses_text=True,
        )
    )
