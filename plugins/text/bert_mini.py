"""``bert_mini``: a 4-layer, 256-wide BERT (the shape of prajjwal1/bert-mini, ~11M params)
with the uncased WordPiece tokenizer, as the studies use it for captions.

Randomly initialised unless ``weights`` names a local file or ``pretrained = true`` finds
prajjwal1/bert-mini in the local Hugging Face cache (no BERT-Mini weights ship offline; the
encoder never downloads, ``vlbench run`` fetches missing weights before the runs). That checkpoint (``bert.``-prefixed, with MLM heads) loads as is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.plugins.text._tokenize import (
    WORDPIECE_VOCAB_SIZE,
    BertTextEncoder,
    bert_state,
    check_max_length,
    wordpiece_tokenizer,
)
from vlbench.pretrained import HF_DEFAULT_FILES, WeightsSource
from vlbench.types import Register, TextEncoderSpec
from vlbench.weights import load_into, load_state_dict_file

NAME = "bert_mini"
MAX_POSITIONS = 512
HUB_REPO = "prajjwal1/bert-mini"  # the published weights of this shape (uncased WordPiece)


def build(pretrained: bool = False, weights: str | os.PathLike[str] | None = None, max_length: int = 32) -> BertTextEncoder:
    """BERT-Mini: random, from a local ``weights`` file (wins), or from the local HF cache."""
    from transformers import BertConfig, BertModel

    check_max_length(NAME, max_length, MAX_POSITIONS)
    source = weights if weights is not None else (_cached_weights() if pretrained else None)
    config = BertConfig(
        vocab_size=WORDPIECE_VOCAB_SIZE,
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        max_position_embeddings=MAX_POSITIONS,
    )
    model = BertModel(config, add_pooling_layer=False)
    if source is not None:
        state = bert_state(load_state_dict_file(source))
        load_into(model, state, what=f"text encoder {NAME!r} (BERT-Mini)", source=f"file {source}")
    return BertTextEncoder(model, wordpiece_tokenizer(), max_length)


def weights_source(options: Mapping[str, Any]) -> WeightsSource:
    """What transformers' from_pretrained would fetch for BERT-Mini (the spec's weights source)."""
    return WeightsSource.huggingface(HUB_REPO)


def _cached_weights() -> str:
    """prajjwal1/bert-mini's checkpoint from the local Hugging Face cache, or a UserError."""
    from huggingface_hub import constants, try_to_load_from_cache

    filenames = HF_DEFAULT_FILES
    for filename in filenames:
        found = try_to_load_from_cache(HUB_REPO, filename)
        if isinstance(found, str):
            return found
    raise UserError(
        f"text encoder {NAME!r}: pretrained = true needs {HUB_REPO} ({' or '.join(filenames)}) in the "
        f"Hugging Face cache {constants.HF_HUB_CACHE}, and the encoder itself never downloads (an online `vlbench run` or `vlbench weights fetch SUITE` puts it there). Fix: download "
        f"{HUB_REPO}'s pytorch_model.bin on a machine with internet and set "
        f'`weights = "/path/to/pytorch_model.bin"`, or copy its Hugging Face cache here, or use pretrained = false.'
    )


@hookimpl
def vlbench_register_text_encoders(register: Register) -> None:
    register(
        TextEncoderSpec(
            name=NAME,
            factory=build,
            description="BERT-Mini (4 layers, 256 wide, 11M params), WordPiece uncased; random init "
            "unless weights = path or prajjwal1/bert-mini is in the HF cache; pooled = masked mean of tokens",
            options={"max_length": 32},
            weights_source=weights_source,
        )
    )
