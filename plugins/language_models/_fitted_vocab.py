"""BERT's uncased WordPiece vocabulary cut down to the pieces a caption corpus uses.

A random-init LM (tiny_llama) learns nothing from the 30,522-way output layer of the full
vocabulary but cost: on a CPU quickstart over a few dozen distinct words, most of every
training step is spent in that softmax. ``vocabulary = "train_captions"`` keeps the same
tokenizer (normalizer, pre-tokenizer, greedy longest-match WordPiece, decoder) with only the
pieces the TRAIN captions produce, plus the special tokens: every train caption tokenizes to
the same pieces as before, and a word made of pieces never seen in training becomes [UNK].
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vlbench.errors import UserError

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def fitted_wordpiece(captions: Sequence[str]) -> Any:
    """A ``PreTrainedTokenizerFast`` over the special tokens + the pieces ``captions`` use."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece
    from transformers import PreTrainedTokenizerFast

    from vlbench.plugins.text._tokenize import wordpiece_tokenizer

    if not captions:
        raise UserError(
            'tiny_llama: vocabulary = "train_captions" needs a task that hands the train captions to the '
            'language model (captioning does); use vocabulary = "bert" with this task.'
        )
    full = wordpiece_tokenizer()
    used = {i for ids in full(list(captions), add_special_tokens=False)["input_ids"] for i in ids}
    by_id = {i: piece for piece, i in full.get_vocab().items()}
    pieces = [*SPECIALS, *sorted(by_id[i] for i in used if by_id[i] not in SPECIALS)]
    backend = Tokenizer.from_str(full.backend_tokenizer.to_str())
    backend.model = WordPiece(
        vocab={piece: i for i, piece in enumerate(pieces)}, unk_token="[UNK]", continuing_subword_prefix="##"
    )
    backend.post_processor = None  # vlbench adds BOS/EOS itself (CausalLM.encode); the template held the full ids
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
