"""VLModel: a run's built components, keyed by kind, and each objective's methods for tasks.

A fusion module never holds the encoders: it receives their :class:`EncoderOutput` and owns
only its projections and heads. :class:`VLModel` holds every model component the run built
(``vision``, ``text``, ``fusion``, or any kind a plugin registers) as a submodule named by
its kind, so ``model.vision`` and the state-dict keys (``vision.*``) follow the kind names.
A kind the run declares but did not build (no text encoder) reads as None.

The methods below are what tasks of the built-in objectives call (see the tables in
:mod:`vlbench.objectives.embedding`, :mod:`.classification` and :mod:`.generation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vlbench.types.encoders import TokenizedText


class VLModel(nn.Module):
    """The model a task trains and evaluates: its components by kind, in build order."""

    def __init__(self, components: Mapping[str, nn.Module | None]):
        super().__init__()
        for kind, module in components.items():
            if module is not None:
                self.add_module(kind, module)
        self._kinds = tuple(components)  # after add_module, which refuses names that already resolve

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name in self.__dict__.get("_kinds", ()):
                return None  # a kind this run declares but did not build
            raise

    def components(self) -> dict[str, nn.Module]:
        """The built components by kind, in build order."""
        return {kind: module for kind in self._kinds if (module := self._modules.get(kind)) is not None}

    def tokenize(self, texts: list[str]) -> TokenizedText:
        if self.text is None:
            raise RuntimeError("this model has no text encoder")
        return self.text.tokenize(texts)

    # embedding objective
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.fusion.embed_image(self.vision(images))

    def encode_text(self, text: TokenizedText) -> torch.Tensor:
        return self.fusion.embed_text(self.text(text))

    def logit_scale(self) -> torch.Tensor:
        return self.fusion.logit_scale()

    # classification objective
    def classify(self, images: torch.Tensor, text: TokenizedText | None) -> torch.Tensor:
        text_out = self.text(text) if self.text is not None and text is not None else None
        return self.fusion(self.vision(images), text_out)

    # generation objective
    @property
    def caption_vocab(self) -> Any:
        """The decoder's own tokenizer (ids PAD/BOS/EOS explicit); never the text encoder's."""
        return self.fusion.vocab

    @property
    def caption_max_length(self) -> int:
        """Positions of a caption, BOS and EOS included: what the decoder was built for."""
        return self.fusion.max_length

    def caption_logits(self, images: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits [B, T, V]; logits[:, t] predicts token t + 1."""
        return self.fusion.caption_logits(self.fusion.prefill(self.vision(images)), input_ids)

    def prefill(self, images: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        """Everything decoding needs from the image, computed once; a tuple of tensors (or None)
        with the batch first, so beam search can ``repeat_interleave`` it."""
        return self.fusion.prefill(self.vision(images))

    def decode_step(self, state: tuple[torch.Tensor | None, ...], input_ids: torch.Tensor) -> torch.Tensor:
        """Log-probabilities [B, V] of the token after ``input_ids`` [B, t]."""
        return self.fusion.decode_step(state, input_ids)


def symmetric_info_nce(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's loss: mean of image->text and text->image cross-entropy over the batch.

    Row i of each side is the positive pair. At initialisation it is about ln(B).
    """
    logits = logit_scale * image_emb @ text_emb.t()
    targets = torch.arange(logits.shape[0], device=logits.device)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2
