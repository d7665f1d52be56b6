"""A Hugging Face causal LM as what a prefix-LM fusion needs, whatever its tokenizer.

The fusion prepends projected visual tokens to the caption's token embeddings, so the LM is
driven through ``inputs_embeds`` (never ``input_ids``). BOS, EOS and PAD are explicit ids
the wrapper adds itself, so every tokenizer (Llama's SentencePiece/BPE, BERT's WordPiece)
gives the same layout: ``BOS w1 .. wn EOS PAD ..`` with right padding.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vlbench.errors import UserError

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class LMOutput:
    logits: torch.Tensor  # [B, T, V]; logits[:, t] predicts the token at t + 1
    cache: Any | None = None  # the transformers KV Cache when use_cache=True


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    eos: int
    pad: int


class LMVocabulary:
    """The LM's tokenizer in the generation objective's ``vocab`` protocol (ids only; the
    attention mask is ``ids != pad_id``, right padding)."""

    def __init__(self, lm: CausalLM) -> None:
        self._lm = lm
        self.pad_id, self.bos_id, self.eos_id = lm.special.pad, lm.special.bos, lm.special.eos

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        return self._lm.encode(texts, max_length)[0]

    def decode(self, ids: torch.Tensor) -> list[str]:
        return self._lm.decode(ids)

    def __len__(self) -> int:
        return self._lm.vocab_size  # the logits' width, which may exceed the tokenizer's own count


class CausalLM(nn.Module):
    """A causal LM (``model``) with its tokenizer, special ids and weights provenance.

    Frozen by default: a prefix-LM fusion trains the projection, and unfreezes the LM (or
    only its input embeddings) when its option says so.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: Any,
        special: SpecialIds,
        provenance: Mapping[str, Any],
        freeze: bool = True,
    ) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.special = special
        self.provenance = dict(provenance)
        # transformers 5 renamed the KV-cache argument and output field past_key_values -> cache.
        self._cache_key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
        if freeze:
            self.requires_grad_(False)
            self.model.eval()

    # ------------------------------------------------------------ sizes

    @property
    def embed_dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def context_length(self) -> int:
        return int(self.model.config.max_position_embeddings)

    @property
    def vocab_size(self) -> int:
        return self.input_embeddings().num_embeddings

    @property
    def weights_provenance(self) -> dict[str, Any]:
        """Where the weights came from, for the record (engine: ``components.<kind>.weights_provenance``)."""
        return self.provenance

    @property
    def vocab(self) -> LMVocabulary:
        return LMVocabulary(self)

    def input_embeddings(self) -> nn.Embedding:
        embeddings = self.model.get_input_embeddings()
        if not isinstance(embeddings, nn.Embedding):  # the fusion reads and trains them as an embedding table
            raise TypeError(f"the language model's input embeddings are a {type(embeddings).__name__}, not an nn.Embedding")
        return embeddings

    # ------------------------------------------------------------ tokens

    def encode(self, texts: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids [B, max_length], mask [B, max_length] bool)``: BOS w1 .. wn EOS PAD ..;
        truncation keeps BOS and ends with EOS."""
        if max_length < 3:
            raise UserError(f"language model: max_length must be at least 3 (BOS, a token, EOS), got {max_length}.")
        pieces = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        ids = torch.full((len(pieces), max_length), self.special.pad, dtype=torch.long)
        mask = torch.zeros((len(pieces), max_length), dtype=torch.bool)
        for row, words in enumerate(pieces):
            seq = [self.special.bos, *words[: max_length - 2], self.special.eos]
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = True
        return ids, mask

    def decode(self, ids: torch.Tensor) -> list[str]:
        """Text of each row, stopping at the first EOS; BOS and PAD dropped."""
        texts = []
        for row in ids.tolist():
            if self.special.eos in row[1:]:
                row = row[: row.index(self.special.eos, 1)]
            kept = [t for t in row if t not in (self.special.bos, self.special.pad)]
            texts.append(self.tokenizer.decode(kept, skip_special_tokens=True).strip())
        return texts

    # ------------------------------------------------------------ forward

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.input_embeddings()(input_ids)

    def forward(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        cache: Any | None = None,
        use_cache: bool = False,
    ) -> LMOutput:
        """Logits for ``inputs_embeds`` [B, T, D]; ``attention_mask`` covers the cached
        positions too ([B, past + T]), right padding only."""
        out = self.model(
            inputs_embeds=inputs_embeds,
            attention_mask=attention_mask.long(),
            use_cache=use_cache,
            **{self._cache_key: cache},
        )
        return LMOutput(out.logits, out[self._cache_key] if use_cache else None)

    def prefix_step(self, prefix: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """A ``step(input_ids [B', t]) -> log-probs [B', V]`` for ``greedy``/``beam_search``
        continuing after ``prefix`` [B', P, D] (every prefix position real).

        While each call extends the previous one by a token (greedy) the step feeds only
        that token through the KV cache; any other call (beam search reorders rows)
        recomputes from the prefix, so the result never depends on the call history.
        """
        state: dict[str, Any] = {"ids": None, "cache": None}

        @torch.no_grad()
        def step(input_ids: torch.Tensor) -> torch.Tensor:
            if input_ids.shape[0] != prefix.shape[0]:
                raise ValueError(f"step got {input_ids.shape[0]} rows for a prefix of {prefix.shape[0]}")
            seen = state["ids"]
            extends = seen is not None and seen.shape[1] == input_ids.shape[1] - 1 and torch.equal(seen, input_ids[:, :-1])
            new_ids = input_ids[:, -1:] if extends else input_ids
            embeds = self.embed(new_ids)
            if not extends:
                embeds = torch.cat([prefix.to(embeds.dtype), embeds], dim=1)
            mask = torch.ones(prefix.shape[0], prefix.shape[1] + input_ids.shape[1], dtype=torch.long, device=prefix.device)
            out = self(embeds, mask, cache=state["cache"] if extends else None, use_cache=True)
            state["ids"], state["cache"] = input_ids, out.cache
            return torch.log_softmax(out.logits[:, -1].float(), dim=-1)

        return step
