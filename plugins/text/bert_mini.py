"""``bert_mini``: a 4-layer, 256-wide BERT (the shape of prajjwal1/bert-mini, ~11M params)
with the uncased WordPiece tokenizer, as the studies use it for captions.

Randomly initialised unless ``weights`` names a local file: no BERT-Mini weights ship
offline, and ``pretrained = true`` refuses rather than pretend. prajjwal1/bert-mini's own
``pytorch_model.bin`` (``bert.``-prefixed, with MLM heads) loads as is.
"""

from __future__ import annotations

import os

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.plugins.text._tokenize import (
    WORDPIECE_VOCAB_SIZE,
    BertTextEncoder,
    bert_state,
    check_max_length,
    load_checked,
    wordpiece_tokenizer,
)
from vlbench.types import Register, TextEncoderSpec
from vlbench.weights import load_state_dict_file

NAME = "bert_mini"
MAX_POSITIONS = 512


def build(pretrained: bool = False, weights: str | os.PathLike[str] | None = None, max_length: int = 32) -> BertTextEncoder:
    """BERT-Mini, random or from ``weights``; pooled = masked mean of the tokens."""
    from transformers import BertConfig, BertModel

    check_max_length(NAME, max_length, MAX_POSITIONS)
    if pretrained and weights is None:
        raise UserError(
            f"text encoder {NAME!r}: no pretrained BERT-Mini ships with vlbench and it never "
            f"downloads. Download prajjwal1/bert-mini's pytorch_model.bin elsewhere and set "
            f"`weights = \"/path/to/pytorch_model.bin\"`, or use pretrained = false."
        )
    config = BertConfig(
        vocab_size=WORDPIECE_VOCAB_SIZE,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=MAX_POSITIONS,
    )
    model = BertModel(config, add_pooling_layer=False)
    if weights is not None:
        load_checked(model, bert_state(load_state_dict_file(weights)), what=f"text encoder {NAME!r} (BERT-Mini)", source=f"file {weights}")
    return BertTextEncoder(model, wordpiece_tokenizer(), max_length)


@hookimpl
def vlbench_register_text_encoders(register: Register) -> None:
    register(
        TextEncoderSpec(
            name=NAME,
            factory=build,
            description="BERT-Mini (4 layers, 256 wide, 11M params), WordPiece uncased; random init "
            "unless weights = path; pooled = masked mean of tokens",
            options={"max_length": 32},
        )
    )
