"""Visual tokens as a prefix of a decoder-only language model (study 004, "CNNGemma";
PaliGemma-style): the image encoder's output is projected into the LM's embedding width and
prepended to the caption's token embeddings.

- ``tokens = "single"``: the encoder's pooled feature as one token (study 004's "final layer
  before the classifier").
- ``tokens = "multi"``: the spatial map as tokens, row-major (7x7 = 49 for a CNN at 224);
  ``grid = g`` average-pools it to g x g first. A ViT's class/register tokens are dropped:
  the multi-token prefix is spatial only.

It follows the generation objective's fusion protocol (``vocab``, ``max_length``,
``prefill``, ``caption_logits``, ``decode_step``): the LM's own tokenizer is the vocabulary,
the state is the prefix embeddings, and ``caption_logits`` covers the caption positions
only, so the objective's teacher-forced loss (PAD ignored) scores caption tokens only. The LM is frozen (only the projection trains), fully trained,
or trained in its input embeddings only (``lm_training``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from vlbench.errors import UserError
from vlbench.plugins.language_models._causal_lm import CausalLM, LMVocabulary
from vlbench.types import CostStage, EncoderOutput, VisionInfo

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
                f'positions. Lower `grid` (multi) or `max_length`, or use tokens = "single".'
            )
        width_in = vision.pooled_dim if tokens == "single" else vision.token_dim
        self.project = (
            nn.Linear(width_in, lm.embed_dim)
            if projection == "linear"
            else nn.Sequential(nn.Linear(width_in, lm.embed_dim), nn.GELU(), nn.Linear(lm.embed_dim, lm.embed_dim))
        )
        # The run's model holds the language model as its own component (model.language_model), so
        # the fusion keeps a reference that is no submodule: its parameters are counted, moved and
        # saved once, under their own key.
        self._lm = (lm,)
        self.memory_tokens = self.prefix_length  # what the generation objective's cost block reports
        self._stepper: tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]] | None = None
        lm.requires_grad_(lm_training == "full")
        if lm_training == "embeddings":
            # With tied weights (SmolLM2, tiny_llama) this also trains the output projection.
            lm.input_embeddings().requires_grad_(True)

    def _prefix_length(self, vision: VisionInfo, grid: int | None) -> int:
        if self.tokens == "single":
            return 1
        if vision.grid_size is None:
            raise UserError(
                'fusion prefix_lm: tokens = "multi" needs a spatial token grid, and this vision encoder reports '
                'none (its tokens are pooled or merged). Use tokens = "single", or a CNN/ViT with a plain grid.'
            )
        h, w = vision.grid_size
        if grid is None:
            return h * w
        if not isinstance(grid, int) or isinstance(grid, bool) or not 1 <= grid <= min(h, w):
            raise UserError(
                f"fusion prefix_lm: grid must be an integer from 1 to {min(h, w)} (the encoder's grid is {h}x{w}), got {grid!r}."
            )
        return grid * grid

    @property
    def lm(self) -> CausalLM:
        return self._lm[0]

    def train(self, mode: bool = True) -> PrefixLM:
        super().train(mode)
        # A frozen LM keeps inference behaviour (dropout off) while the projection trains.
        self.lm.train(mode and self.lm_training != "frozen")
        return self

    def cost_stages(self, model: Any, images: torch.Tensor) -> dict[str, CostStage]:
        """The whole model's decoding path at ``images``' batch, stage by stage (the generation
        objective times them): encoder, projection, LM prefill over the visual prefix + BOS, and
        one decode step through the KV cache (the same position every call)."""
        features = model.vision(images)
        prefix = self.visual_prefix(features)
        bos = torch.full((images.shape[0], 1), self.lm.special.bos, dtype=torch.long, device=images.device)
        embeds = torch.cat([prefix, self.lm.embed(bos).to(prefix.dtype)], dim=1)
        mask = torch.ones(embeds.shape[:2], dtype=torch.bool, device=images.device)
        cache = self.lm(embeds, mask, use_cache=True).cache
        step_mask = torch.ones(embeds.shape[0], embeds.shape[1] + 1, dtype=torch.bool, device=images.device)

        def decode_token() -> None:
            self.lm(self.lm.embed(bos), step_mask, cache=cache, use_cache=True)
            cache.crop(-1)  # drop the token again

        n = images.shape[0]
        return {
            "vision_encoder": CostStage(lambda: model.vision(images), items=n, unit="images"),
            "projection": CostStage(lambda: self.visual_prefix(features), items=n, unit="images"),
            "lm_prefill": CostStage(lambda: self.lm(embeds, mask, use_cache=True), items=n, unit="images"),
            "decode_token": CostStage(decode_token, items=n, unit="tokens"),
        }

    # ------------------------------------------------------------ prefix

    def visual_prefix(self, image: EncoderOutput) -> torch.Tensor:
        """[B, prefix_length, lm.embed_dim] from the vision encoder's output."""
        if self.tokens == "single":
            return self.project(image.pooled).unsqueeze(1)
        spatial = image.tokens[:, self.num_prefix_tokens :]
        if self.grid is not None and self.source_grid is not None:  # multi tokens always have a source grid
            maps = spatial.transpose(1, 2).reshape(spatial.shape[0], spatial.shape[2], *self.source_grid)
            spatial = F.adaptive_avg_pool2d(maps, self.grid).flatten(2).transpose(1, 2)
        return self.project(spatial)

    # ------------------------------------------------------------ generation objective

    @property
    def vocab(self) -> LMVocabulary:
        return self.lm.vocab

    def prefill(self, image: EncoderOutput) -> tuple[torch.Tensor]:
        """The decoding state: the visual prefix embeddings (batch first)."""
        return (self.visual_prefix(image),)

    def caption_logits(self, state: tuple[torch.Tensor], input_ids: torch.Tensor) -> torch.Tensor:
        """[B, T, V] over the caption positions only: logits[:, t] predicts token t + 1.
        The prefix positions are dropped, so a loss on these never scores them."""
        (prefix,) = state
        words = self.lm.embed(input_ids)
        embeds = torch.cat([prefix.to(words.dtype), words], dim=1)
        mask = torch.cat(
            [torch.ones(prefix.shape[:2], dtype=torch.bool, device=prefix.device), input_ids != self.lm.special.pad], dim=1
        )
        return self.lm(embeds, mask).logits[:, prefix.shape[1] :]

    def decode_step(self, state: tuple[torch.Tensor], input_ids: torch.Tensor) -> torch.Tensor:
        """Log-probs [B, V] of the next token. Consecutive calls on the same state that extend
        the ids by one token reuse the LM's KV cache (greedy); any other call recomputes."""
        (prefix,) = state
        if self._stepper is None or self._stepper[0] is not prefix:
            self._stepper = (prefix, self.lm.prefix_step(prefix.detach()))
        return self._stepper[1](input_ids)


def _check_choice(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UserError(f"fusion prefix_lm: {key} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}.")
