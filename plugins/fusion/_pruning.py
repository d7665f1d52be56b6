"""Visual token pruning before cross-attention (study 002: "cross-attention with pruning").

A backbone's tokens are ``[prefix tokens (a ViT's class/register tokens), spatial tokens]``.
Pruning keeps the ``K = max(1, floor(keep_ratio * N_spatial + 0.5))`` highest-scoring
SPATIAL tokens, in their original order, so the decoder cross-attends to K tokens instead
of N_spatial. Prefix tokens are never part of the kept memory, at any ratio: they only
serve as the query of the "cls_attention" rule. Rules:

* ``"l2"``: the L2 norm of each spatial token (a parameter-free saliency score that works
  for CNN positions and ViT patches alike);
* ``"cls_attention"``: the attention the class token (prefix token 0) pays to each patch,
  ``softmax(<cls, x_i> / sqrt(D))`` over the output tokens (the encoder interface exposes
  the last block's outputs, not its query/key projections; a caller that has the real
  attention row passes it as ``attention``). Needs ``num_prefix_tokens >= 1``;
* ``"random"``: a uniform random choice, the control that says whether a score beats
  chance; seeded through ``generator`` (a fixed seed when none is given).

Padded tokens (``mask`` False) score lowest, so they are pruned first; the returned mask
says which kept tokens are real.
"""

from __future__ import annotations

import math

import torch

RULES = ("l2", "cls_attention", "random")
_DEFAULT_RANDOM_SEED = 0


def check_keep_ratio(keep_ratio: object) -> float:
    """``keep_ratio`` as a float, or ValueError saying what is accepted."""
    if isinstance(keep_ratio, bool) or not isinstance(keep_ratio, (int, float)) or not 0 < keep_ratio <= 1:
        raise ValueError(
            f"keep_ratio must be a number in (0, 1] (1 - prune ratio: 1 keeps every visual token, 0.7 prunes 30%), "
            f"got {keep_ratio!r}"
        )
    return float(keep_ratio)


def check_rule(rule: object, num_prefix_tokens: int) -> str:
    """``rule`` if it is known and usable with this many prefix tokens, else ValueError."""
    if rule not in RULES:
        raise ValueError(f"prune_rule must be one of {list(RULES)}, got {rule!r}")
    if rule == "cls_attention" and num_prefix_tokens < 1:
        raise ValueError(
            "prune_rule 'cls_attention' needs a class token (num_prefix_tokens >= 1, as in a ViT), but this "
            "backbone has none; use prune_rule 'l2' or 'random' with it"
        )
    return rule


def kept_count(keep_ratio: float, n_spatial: int) -> int:
    """K = max(1, keep_ratio * n_spatial rounded half up)."""
    return max(1, min(n_spatial, math.floor(keep_ratio * n_spatial + 0.5)))


def select_tokens(
    tokens: torch.Tensor,
    keep_ratio: float,
    rule: str,
    num_prefix_tokens: int,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    attention: torch.Tensor | None = None,
) -> torch.Tensor:
    """Indices [B, K] into the SPATIAL tokens (``tokens[:, num_prefix_tokens:]``) to keep,
    ascending. Arguments as :func:`prune_tokens`."""
    if tokens.ndim != 3:
        raise ValueError(f"tokens must be [batch, tokens, dim], got shape {tuple(tokens.shape)}")
    keep_ratio = check_keep_ratio(keep_ratio)
    if (
        isinstance(num_prefix_tokens, bool)
        or not isinstance(num_prefix_tokens, int)
        or not 0 <= num_prefix_tokens < tokens.shape[1]
    ):
        raise ValueError(
            f"num_prefix_tokens must be an integer from 0 to {tokens.shape[1] - 1} (tokens holds {tokens.shape[1]}), "
            f"got {num_prefix_tokens!r}"
        )
    rule = check_rule(rule, num_prefix_tokens)
    spatial = tokens[:, num_prefix_tokens:]
    b, n = spatial.shape[:2]
    k = kept_count(keep_ratio, n)
    if k == n:
        return torch.arange(n, device=tokens.device).expand(b, n)
    with torch.no_grad():  # scores choose tokens; no gradient flows through the choice
        scores = _scores(tokens, spatial, rule, num_prefix_tokens, generator, attention).float()
        if mask is not None:
            valid = mask[:, num_prefix_tokens:].to(torch.bool)
            scores = scores.masked_fill(~valid, float("-inf"))
        return scores.topk(k, dim=1).indices.sort(dim=1).values


def _scores(tokens, spatial, rule, num_prefix_tokens, generator, attention) -> torch.Tensor:
    b, n = spatial.shape[:2]
    if rule == "l2":
        return spatial.float().norm(dim=-1)
    if rule == "cls_attention":
        if attention is not None:
            if tuple(attention.shape) != (b, n):
                raise ValueError(f"attention must be [batch, spatial tokens] = {(b, n)}, got {tuple(attention.shape)}")
            return attention
        cls = tokens[:, 0].float()
        return torch.einsum("bd,bnd->bn", cls, spatial.float()).div(math.sqrt(tokens.shape[-1])).softmax(dim=1)
    if generator is None:
        generator = torch.Generator(device=tokens.device).manual_seed(_DEFAULT_RANDOM_SEED)
    return torch.rand(b, n, generator=generator, device=tokens.device)


def prune_tokens(
    tokens: torch.Tensor,
    keep_ratio: float,
    rule: str,
    num_prefix_tokens: int,
    mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    attention: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, int]:
    """Keep the best ``keep_ratio`` of the spatial tokens by ``rule``.

    tokens: [B, N, D] = prefix tokens then spatial tokens; mask: [B, N] bool, True = real
    token, or None; generator: the seed source of rule "random"; attention: optional
    [B, N_spatial] class-token attention for rule "cls_attention".
    Returns (kept [B, K, D], kept_mask [B, K] or None when ``mask`` is None, K).
    """
    index = select_tokens(tokens, keep_ratio, rule, num_prefix_tokens, mask, generator, attention)
    spatial = tokens[:, num_prefix_tokens:]
    kept = spatial.gather(1, index.unsqueeze(-1).expand(-1, -1, spatial.shape[-1]))
    kept_mask = None if mask is None else mask[:, num_prefix_tokens:].to(torch.bool).gather(1, index)
    return kept, kept_mask, index.shape[1]
