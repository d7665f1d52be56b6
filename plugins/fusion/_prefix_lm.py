"""Visual tokens as a prefix of a decoder-only language model (study 004, "CNNGemma";
PaliGemma-style): the image encoder's output is projected into the LM's embedding width and
prepended to the caption's token embeddings.

- ``tokens = "single"``: the encoder's pooled feature as one token (study 004's "final layer
  before the classifier").
- ``tokens = "multi"``: the spatial map as tokens, row-major (7x7 = 49 for a CNN at 224);
  ``grid = g`` average-pools it to g x g first. A ViT's class/register tokens are dropped:
  the multi-token prefix is spatial only.

Loss: next-token cross-entropy on the caption tokens only (w1 .. EOS); prefix and PAD
positions are never scored. The LM is frozen (only the projection trains), fully trained,
or trained in its input embeddings only (``lm_training``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlbench.errors import UserError
from vlbench.plugins.language_models._causal_lm import CausalLM
from vlbench.types import EncoderOutput, VisionInfo

TOKENS = ("single", "multi")
PROJECTIONS = ("linear", "mlp")
LM_TRAINING = ("frozen", "full", "embeddings")


class PrefixLM(nn.Module):
    """Projection + language model; ``max_length`` counts the caption's BOS and EOS."""

    def __init__(
        self,
        vision: VisionInfo,
        lm: CausalLM,
        tokens: Literal["single", "multi"] = "single",
        grid: int | None = None,
        projection: Literal["linear", "mlp"] = "linear",
        lm_training: Literal["frozen", "full", "embeddings"] = "frozen",
        max_length: int = 32,
    ) -> None:
        super().__init__()
        _check_choice("tokens", tokens, TOKENS)
        _check_choice("projection", projection, PROJECTIONS)
        _check_choice("lm_training", lm_training, LM_TRAINING)
        self.tokens, self.lm_training, self.max_length = tokens, lm_training, max_length
        self.num_prefix_tokens = vision.num_prefix_tokens
        self.prefix_length = self._prefix_length(vision, grid)
        self.grid, self.source_grid = grid, vision.grid_size
        if self.prefix_length + max_length > lm.context_length:
            raise UserError(
                f"fusion prefix_lm: {self.prefix_length} visual tokens + max_length {max_length} caption tokens "
                f"= {self.prefix_length + max_length} exceeds the language model's context of {lm.context_length} "
                f"positions. Lower `grid` (multi) or `max_length`, or use tokens = \"single\"."
            )
        width_in = vision.pooled_dim if tokens == "single" else vision.token_dim
        self.project = (
            nn.Linear(width_in, lm.embed_dim)
            if projection == "linear"
            else nn.Sequential(nn.Linear(width_in, lm.embed_dim), nn.GELU(), nn.Linear(lm.embed_dim, lm.embed_dim))
        )
        self.lm = lm
        lm.requires_grad_(lm_training == "full")
        if lm_training == "embeddings":
            # With tied weights (SmolLM2, tiny_llama) this also trains the output projection.
            lm.input_embeddings().requires_grad_(True)

    def _prefix_length(self, vision: VisionInfo, grid: int | None) -> int:
        if self.tokens == "single":
            return 1
        if vision.grid_size is None:
            raise UserError(
                "fusion prefix_lm: tokens = \"multi\" needs a spatial token grid, and this vision encoder reports "
                "none (its tokens are pooled or merged). Use tokens = \"single\", or a CNN/ViT with a plain grid."
            )
        h, w = vision.grid_size
        if grid is None:
            return h * w
        if not isinstance(grid, int) or isinstance(grid, bool) or not 1 <= grid <= min(h, w):
            raise UserError(
                f"fusion prefix_lm: grid must be an integer from 1 to {min(h, w)} (the encoder's grid is {h}x{w}), "
                f"got {grid!r}."
            )
        return grid * grid

    def train(self, mode: bool = True) -> PrefixLM:
        super().train(mode)
        if self.lm_training == "frozen":
            self.lm.eval()  # a frozen LM keeps inference behaviour (dropout off) while the projection trains
        return self

    # ------------------------------------------------------------ prefix

    def visual_prefix(self, image: EncoderOutput) -> torch.Tensor:
        """[B, prefix_length, lm.embed_dim] from the vision encoder's output."""
        if self.tokens == "single":
            return self.project(image.pooled).unsqueeze(1)
        spatial = image.tokens[:, self.num_prefix_tokens:]
        if self.grid is not None:
            maps = spatial.transpose(1, 2).reshape(spatial.shape[0], spatial.shape[2], *self.source_grid)
            spatial = F.adaptive_avg_pool2d(maps, self.grid).flatten(2).transpose(1, 2)
        return self.project(spatial)

    # ------------------------------------------------------------ objective

    def loss(self, image: EncoderOutput, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy over the caption tokens after BOS (w1 .. EOS)."""
        prefix = self.visual_prefix(image)
        words = self.lm.embed(input_ids)
        embeds = torch.cat([prefix.to(words.dtype), words], dim=1)
        mask = torch.cat([torch.ones(prefix.shape[:2], dtype=torch.bool, device=prefix.device), attention_mask.bool()], dim=1)
        logits = self.lm(embeds, mask).logits
        p = prefix.shape[1]
        predicted = logits[:, p : p + input_ids.shape[1] - 1]  # position p + t predicts caption token t + 1
        targets = input_ids[:, 1:].masked_fill(~attention_mask[:, 1:].bool(), -100)
        return F.cross_entropy(predicted.reshape(-1, predicted.shape[-1]).float(), targets.reshape(-1), ignore_index=-100)

    def step(self, image: EncoderOutput) -> Callable[[torch.Tensor], torch.Tensor]:
        """``step(input_ids [B, t]) -> log-probs [B, V]`` for the shared greedy/beam decoders;
        for beam search, pass ``image`` with its rows repeated (``repeat_interleave``)."""
        return self.lm.prefix_step(self.visual_prefix(image).detach())


def _check_choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(
            f"fusion prefix_lm: {key} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}."
        )
