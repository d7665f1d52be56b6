"""Study 002's captioning fusion: a transformer decoder cross-attending to (pruned) visual tokens.

Serves the ``generation`` objective (:mod:`vlbench.objectives.generation`). The visual
tokens are the backbone's own: a ViT's patch tokens behind its prefix (class/register)
tokens, a CNN's final-stage positions. ``keep_ratio`` (1 - prune ratio) keeps the best
spatial tokens by ``prune_rule`` ("l2", "cls_attention" for a ViT, "random" as the control)
before cross-attention (:mod:`._pruning`); prefix tokens are never part of the memory. The
vocabulary is the decoder's own, fitted on the TRAIN captions the task passes
(``captions``), ids PAD 0, BOS 1, EOS 2, UNK 3 (:mod:`._caption_vocab`); it is a
deterministic function of those captions, so it is rebuilt rather than stored in the weights.

Defaults are study 002's: 2 layers, 4 heads, d_model 512, FF 2048, dropout 0.1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.plugins.fusion._caption_decoder import POSITIONS, CaptionDecoder
from vlbench.plugins.fusion._caption_vocab import WordVocabulary
from vlbench.plugins.fusion._pruning import RULES, kept_count
from vlbench.types import EncoderOutput, FusionSpec, Register, TextInfo, VisionInfo

OPTIONS: dict[str, Any] = {
    "d_model": 512,
    "layers": 2,
    "heads": 4,
    "ff_dim": 2048,
    "dropout": 0.1,
    "max_length": 32,  # positions per caption, BOS and EOS included
    "keep_ratio": 1.0,  # share of the spatial tokens kept as memory; 1 - prune ratio
    "prune_rule": "l2",  # "l2", "cls_attention" (needs a class token) or "random"
    "positions": "learned",  # word positions: "learned" or "sinusoidal"
    "min_count": 1,  # a train word seen fewer times is UNK
    "max_vocab": 0,  # cap on the words kept (most frequent first); 0 = no cap
}


def check_options(options: Mapping[str, Any]) -> None:
    """Out-of-range options, found when the suite loads, before anything is built."""
    ratio = options["keep_ratio"]
    if not 0 < ratio <= 1:
        raise ValueError(f"keep_ratio must be in (0, 1] (the share of visual tokens kept; 1 - prune ratio), got {ratio}")
    if options["prune_rule"] not in RULES:
        raise ValueError(f"prune_rule must be one of {list(RULES)}, got {options['prune_rule']!r}")
    for name in ("d_model", "layers", "heads", "ff_dim", "min_count"):
        if options[name] < 1:
            raise ValueError(f"{name} must be at least 1, got {options[name]}")
    if options["d_model"] % options["heads"]:
        raise ValueError(
            f"heads ({options['heads']}) must divide d_model ({options['d_model']}), e.g. d_model = 512 with heads = 4 or 8"
        )
    if options["d_model"] % 2:
        raise ValueError(f"d_model must be even (sinusoidal positions of the visual tokens), got {options['d_model']}")
    if not 0 <= options["dropout"] < 1:
        raise ValueError(f"dropout must be in [0, 1), got {options['dropout']}")
    if options["max_length"] < 3:
        raise ValueError(f"max_length must be at least 3 (BOS, a word, EOS), got {options['max_length']}")
    if options["positions"] not in POSITIONS:
        raise ValueError(f"positions must be one of {list(POSITIONS)}, got {options['positions']!r}")
    if options["max_vocab"] < 0:
        raise ValueError(f"max_vocab must be 0 (no cap) or positive, got {options['max_vocab']}")


class CrossAttentionDecoder(nn.Module):
    """Generation protocol over :class:`CaptionDecoder`; state = (memory, memory mask)."""

    def __init__(self, vision: VisionInfo, vocab: WordVocabulary, **options: Any):
        super().__init__()
        own = {
            k: options[k]
            for k in ("d_model", "layers", "heads", "ff_dim", "dropout", "max_length", "keep_ratio", "prune_rule", "positions")
        }
        if own["prune_rule"] == "cls_attention" and vision.num_prefix_tokens < 1:
            raise UserError(
                'fusion cross_attention_decoder: prune_rule "cls_attention" needs a vision encoder with a class '
                'token (a ViT); this one has none. Use prune_rule = "l2" or "random".'
            )
        self.vocab = vocab
        self.max_length = own["max_length"]
        self.decoder = CaptionDecoder(
            vision.token_dim, len(vocab), num_prefix_tokens=vision.num_prefix_tokens, pad_id=vocab.pad_id, **own
        )
        spatial = vision.grid_size[0] * vision.grid_size[1] if vision.grid_size else None
        # What the record states about pruning: rule, ratio and the memory it leaves.
        self.pruning = {
            "rule": own["prune_rule"],
            "keep_ratio": own["keep_ratio"],
            "prune_ratio": round(1 - own["keep_ratio"], 6),
            "spatial_tokens": spatial,
            "kept_tokens": kept_count(own["keep_ratio"], spatial) if spatial else None,
            "prefix_tokens_kept": 0,
        }
        self.memory_tokens = self.pruning["kept_tokens"]

    def prefill(self, image: EncoderOutput) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.decoder.memory(image.tokens, image.mask)

    def caption_logits(self, state: tuple[torch.Tensor, torch.Tensor | None], input_ids: torch.Tensor) -> torch.Tensor:
        return self.decoder(state[0], state[1], input_ids)

    def decode_step(self, state: tuple[torch.Tensor, torch.Tensor | None], input_ids: torch.Tensor) -> torch.Tensor:
        return self.decoder.step(state[0], state[1], input_ids)


def factory(
    vision: VisionInfo,
    text: TextInfo | None,
    num_classes: int | None = None,
    captions: Sequence[str] | None = None,
    **options: Any,
) -> CrossAttentionDecoder:
    if not captions:
        raise UserError(
            "fusion cross_attention_decoder needs the train captions to fit its vocabulary (the task's "
            "fusion_inputs gives them): pair it with a generation task such as captioning on a dataset with captions."
        )
    check_options(options)
    vocab = WordVocabulary.fit(captions, min_count=options["min_count"], max_size=options["max_vocab"] or None)
    return CrossAttentionDecoder(vision, vocab, **options)


@hookimpl
def vlbench_register_fusions(register: Register) -> None:
    register(
        FusionSpec(
            name="cross_attention_decoder",
            factory=factory,
            description=(
                "Transformer caption decoder (causal self-attention, cross-attention to the visual tokens) with "
                "token pruning (keep_ratio, prune_rule l2 / cls_attention / random); study 002 defaults."
            ),
            options=dict(OPTIONS),
            objectives=frozenset({"generation"}),
            uses_text=False,
            check_options=check_options,
        )
    )
