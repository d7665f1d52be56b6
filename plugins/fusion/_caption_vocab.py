"""The caption decoder's own word vocabulary (not the text encoder's tokenizer).

Words come from the same pure-Python PTB-style tokenization the caption metrics use
(:func:`vlbench.plugins.tasks._caption_metrics.ptb_tokenize`), so what the decoder learns
to emit is exactly what the scorers compare. Special ids follow study 002: PAD = 0,
BOS = 1, plus EOS = 2 and UNK = 3; words follow in order of decreasing train count, ties
alphabetical, so the same train captions always give the same ids.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from vlbench.plugins.tasks._caption_metrics import ptb_tokenize

SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


class WordVocabulary:
    """Word <-> id map with BOS/EOS/PAD/UNK; build it with :meth:`fit` on TRAIN captions."""

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Sequence[str]) -> None:
        if list(words[: len(SPECIALS)]) != list(SPECIALS):
            raise ValueError(f"a vocabulary's first words must be the specials {SPECIALS}, got {list(words[:4])}")
        if len(set(words)) != len(words):
            raise ValueError("a vocabulary's words must be unique")
        self.words = tuple(words)
        self._ids = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def fit(cls, captions: Iterable[str], min_count: int = 1, max_size: int | None = None) -> WordVocabulary:
        """Every word seen at least ``min_count`` times in ``captions``, most frequent first
        (ties alphabetical), cut to ``max_size`` ids in all (specials included)."""
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
        if max_size is not None and (isinstance(max_size, bool) or not isinstance(max_size, int) or max_size <= len(SPECIALS)):
            raise ValueError(f"max_size must be None or an integer > {len(SPECIALS)} (the special tokens), got {max_size!r}")
        counts = Counter(w for caption in captions for w in ptb_tokenize(caption).split())
        if not counts:
            raise ValueError("cannot fit a caption vocabulary on no words: the train captions are empty")
        words = sorted((w for w, c in counts.items() if c >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            words = words[: max_size - len(SPECIALS)]
        return cls([*SPECIALS, *words])

    def __len__(self) -> int:
        return len(self.words)

    def tokens(self, text: str) -> list[int]:
        """Word ids of ``text`` (no BOS/EOS), unknown words as UNK."""
        return [self._ids.get(w, self.unk_id) for w in ptb_tokenize(text).split()]

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        """LongTensor [B, max_length]: BOS w1 .. wn EOS PAD ...; a long caption keeps its
        first ``max_length - 2`` words so that BOS and EOS always fit."""
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
            raise ValueError(f"max_length must be an integer >= 2 (room for BOS and EOS), got {max_length!r}")
        out = torch.full((len(texts), max_length), self.pad_id, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.bos_id, *self.tokens(text)[: max_length - 2], self.eos_id]
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: torch.Tensor | Sequence[Sequence[int]]) -> list[str]:
        """One space-joined caption per row: stops at the first EOS, drops BOS and PAD
        (UNK stays visible as ``<unk>``)."""
        rows = ids.tolist() if isinstance(ids, torch.Tensor) else [list(r) for r in ids]
        captions = []
        for row in rows:
            words = []
            for i in row:
                if i == self.eos_id:
                    break
                if i not in (self.bos_id, self.pad_id):
                    words.append(self.words[i])
            captions.append(" ".join(words))
        return captions

    def state_dict(self) -> dict[str, Any]:
        """JSON-able; :meth:`from_state` rebuilds the same vocabulary."""
        return {"words": list(self.words)}

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> WordVocabulary:
        return cls(list(state["words"]))
