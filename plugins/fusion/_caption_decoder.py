"""Study 002's caption decoder: visual tokens -> (pruned) memory -> transformer decoder.

* ``memory``: prune the backbone's spatial tokens (:mod:`._pruning`), project them to
  d_model (LayerNorm + Linear, :class:`._tokens.TokenProjection`), then add a fixed
  sinusoidal encoding of each kept token's spatial index (row-major): CNN positions carry
  little position of their own, and after pruning a memory slot no longer says which
  index it came from.
* ``forward``: word embedding x sqrt(d_model) + positions (learned or sinusoidal), then
  ``nn.TransformerDecoder`` layers (pre-LayerNorm, batch_first): causal self-attention
  with PAD keys masked, cross-attention to the memory, feed-forward; a final LayerNorm and
  a linear layer over the vocabulary.
* ``step``: log-probabilities of the next token given a prefix; decoding
  (:mod:`._decoding`) calls it once per generated token. It re-runs the whole prefix
  (no key/value cache): captions are short, and one code path serves training and decoding.

Defaults are study 002's: 2 layers, 4 heads, d_model 512, FF 2048, dropout 0.1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vlbench.plugins.fusion._pruning import check_keep_ratio, check_rule, select_tokens
from vlbench.plugins.fusion._tokens import TokenProjection

POSITIONS = ("learned", "sinusoidal")


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """[length, dim] fixed encodings of Vaswani et al. (sin on even, cos on odd channels)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


def _positive_int(name: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class CaptionDecoder(nn.Module):
    """Transformer caption decoder over a backbone's visual tokens, with token pruning."""

    def __init__(
        self,
        visual_dim: int,
        vocab_size: int,
        d_model: int = 512,
        layers: int = 2,
        heads: int = 4,
        ff_dim: int = 2048,
        dropout: float = 0.1,
        max_length: int = 32,
        keep_ratio: float = 1.0,
        prune_rule: str = "l2",
        num_prefix_tokens: int = 0,
        positions: str = "learned",
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        for name, value in (
            ("visual_dim", visual_dim),
            ("d_model", d_model),
            ("layers", layers),
            ("heads", heads),
            ("ff_dim", ff_dim),
        ):
            _positive_int(name, value)
        _positive_int("vocab_size", vocab_size, 5)  # the 4 specials and at least one word
        _positive_int("max_length", max_length, 2)
        _positive_int("num_prefix_tokens", num_prefix_tokens, 0)
        if d_model % heads:
            raise ValueError(f"heads ({heads}) must divide d_model ({d_model}); e.g. d_model 512 with 4 or 8 heads")
        if d_model % 2:
            raise ValueError(f"d_model must be even (sinusoidal position encodings), got {d_model}")
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
        if positions not in POSITIONS:
            raise ValueError(f"positions must be one of {list(POSITIONS)}, got {positions!r}")
        self.keep_ratio = check_keep_ratio(keep_ratio)
        self.prune_rule = check_rule(prune_rule, num_prefix_tokens)
        self.num_prefix_tokens = num_prefix_tokens
        self.max_length, self.pad_id, self.d_model = max_length, pad_id, d_model

        self.visual = TokenProjection(visual_dim, d_model)
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        if positions == "learned":
            self.positions = nn.Parameter(torch.zeros(max_length, d_model))
            nn.init.trunc_normal_(self.positions, std=0.02)
        else:
            self.register_buffer("positions", sinusoidal_positions(max_length, d_model), persistent=False)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerDecoderLayer(d_model, heads, ff_dim, dropout, batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, layers, norm=nn.LayerNorm(d_model))
        self.output = nn.Linear(d_model, vocab_size)

    def memory(
        self, tokens: torch.Tensor, mask: torch.Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Visual tokens [B, N, Dv] (prefix tokens first) -> (memory [B, K, d_model],
        memory mask [B, K] bool True = real, or None). ``generator`` seeds rule "random"."""
        index = select_tokens(tokens, self.keep_ratio, self.prune_rule, self.num_prefix_tokens, mask, generator)
        spatial = tokens[:, self.num_prefix_tokens :]
        kept = self.visual(spatial.gather(1, index.unsqueeze(-1).expand(-1, -1, spatial.shape[-1])))
        where = sinusoidal_positions(spatial.shape[1], self.d_model).to(kept.device, kept.dtype)
        kept_mask = None if mask is None else mask[:, self.num_prefix_tokens :].to(torch.bool).gather(1, index)
        return kept + where[index], kept_mask

    def forward(self, memory: torch.Tensor, memory_mask: torch.Tensor | None, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, V]; ``logits[:, t]`` predicts token t + 1 from tokens 0..t."""
        t = input_ids.shape[1]
        if t > self.max_length:
            raise ValueError(f"input_ids has {t} positions but the decoder was built for max_length {self.max_length}")
        x = self.embed(input_ids) * math.sqrt(self.d_model) + self.positions[:t]
        causal = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).triu(1)  # True = may not attend
        h = self.decoder(
            self.dropout(x),
            memory,
            tgt_mask=causal,
            tgt_key_padding_mask=input_ids == self.pad_id,
            memory_key_padding_mask=None if memory_mask is None else ~memory_mask,
            tgt_is_causal=True,
        )
        return self.output(h)

    def step(self, memory: torch.Tensor, memory_mask: torch.Tensor | None, input_ids: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [B, V] of the token after ``input_ids`` [B, t]."""
        return self.forward(memory, memory_mask, input_ids)[:, -1].float().log_softmax(dim=-1)


def teacher_forced_loss(logits: torch.Tensor, input_ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """Mean cross-entropy of ``logits[:, t]`` against ``input_ids[:, t + 1]`` over non-PAD targets."""
    return F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(), input_ids[:, 1:].reshape(-1), ignore_index=pad_id
    )


def token_accuracy(logits: torch.Tensor, input_ids: torch.Tensor, pad_id: int = 0) -> tuple[int, int]:
    """(correct, counted): teacher-forced next-token hits over non-PAD targets (study 002's
    "ACC"; a secondary metric only)."""
    target = input_ids[:, 1:]
    real = target != pad_id
    hits = (logits[:, :-1].argmax(dim=-1) == target) & real
    return int(hits.sum()), int(real.sum())
