"""The mock components of :mod:`vlbench.testing.mocks` (random-init, a few kilobytes each), and
the oracle and random models of the task contract on coded data."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vlbench.testing.contracts import CODED_CLASSES, WordList, _CodedModel
from vlbench.types.datasets import Split
from vlbench.types.encoders import EncoderOutput, TextEncoder, TextInfo, TokenizedText, VisionEncoder, VisionInfo

# ---------------------------------------------------------------- models for the task contract


def oracle_model(split: Split, num_classes: int = CODED_CLASSES) -> nn.Module:
    """Reads the truth back from :func:`~vlbench.testing.contracts.coded_split` data: a task's
    best score. Offers every objective's methods (``encode_image``, ``classify``, ...)."""
    return _CodedModel(split, num_classes, oracle=True).eval()


def random_model(split: Split, num_classes: int = CODED_CLASSES, seed: int = 0) -> nn.Module:
    """Random embeddings and logits on coded data: should score the task's chance level."""
    return _CodedModel(split, num_classes, oracle=False, seed=seed).eval()


# ---------------------------------------------------------------- encoders


class MockVisionEncoder(VisionEncoder):
    """One strided convolution: ``patch x patch`` patches -> ``dim``-wide tokens, mean-pooled."""

    def __init__(
        self, image_size: Sequence[int], pretrained: bool = False, weights: str | None = None, dim: int = 16, patch: int = 8
    ):
        super().__init__()
        if pretrained or weights:
            raise ValueError("mock_vision has no weights: it is random-init only")
        h, w = image_size
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.info = VisionInfo(
            token_dim=dim, pooled_dim=dim, input_size=(h, w), mean=(0.5,) * 3, std=(0.5,) * 3, grid_size=(h // patch, w // patch)
        )

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        tokens = self.embed(images).flatten(2).transpose(1, 2)
        return EncoderOutput(tokens=tokens, pooled=tokens.mean(1))


class MockTextEncoder(TextEncoder):
    """Words hashed into ``vocab`` ids (0 is padding); pooled = mean over real tokens."""

    def __init__(
        self, pretrained: bool = False, weights: str | None = None, dim: int = 16, vocab: int = 1000, max_length: int = 16
    ):
        super().__init__()
        if pretrained or weights:
            raise ValueError("mock_text has no weights: it is random-init only")
        self.vocab = vocab
        self.embed = nn.Embedding(vocab + 1, dim)
        self.info = TextInfo(token_dim=dim, pooled_dim=dim, max_length=max_length)

    def tokenize(self, texts: Sequence[str]) -> TokenizedText:
        length = self.info.max_length
        ids = torch.zeros(len(texts), length, dtype=torch.int64)
        for row, text in enumerate(texts):
            # crc32, not hash(): the same word gets the same id in every process
            words = [zlib.crc32(word.encode()) % self.vocab + 1 for word in text.lower().split()[:length]]
            ids[row, : len(words)] = torch.tensor(words, dtype=torch.int64)
        return TokenizedText(ids, ids > 0)

    def forward(self, text: TokenizedText) -> EncoderOutput:
        tokens = self.embed(text.input_ids)
        weights = text.attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return EncoderOutput(tokens=tokens, pooled=pooled, mask=text.attention_mask)


# ---------------------------------------------------------------- fusion


class MockFusion(nn.Module):
    """Linear maps of the pooled outputs: unit embeddings, and logits summed over both towers."""

    def __init__(self, vision: VisionInfo, text: TextInfo | None, num_classes: int | None, embed_dim: int = 16):
        super().__init__()
        self.image_proj = nn.Linear(vision.pooled_dim, embed_dim)
        self.text_proj = nn.Linear(text.pooled_dim, embed_dim) if text is not None else None
        self.image_head = nn.Linear(vision.pooled_dim, num_classes) if num_classes else None
        self.text_head = nn.Linear(text.pooled_dim, num_classes) if num_classes and text is not None else None
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def embed_image(self, out: EncoderOutput) -> torch.Tensor:
        return F.normalize(self.image_proj(out.pooled), dim=-1)

    def embed_text(self, out: EncoderOutput) -> torch.Tensor:
        if self.text_proj is None:
            raise ValueError("mock_fusion was built without a text encoder: it embeds no text")
        return F.normalize(self.text_proj(out.pooled), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def forward(self, image: EncoderOutput, text: EncoderOutput | None) -> torch.Tensor:
        if self.image_head is None:
            raise ValueError("mock_fusion was built without num_classes: it classifies nothing")
        logits = self.image_head(image.pooled)
        return logits if text is None or self.text_head is None else logits + self.text_head(text.pooled)


class MockDecoder(nn.Module):
    """Generation protocol at its smallest: logits[:, t] = f(token t, pooled image); causal by
    construction. Its vocabulary is fitted on the train captions it is given."""

    def __init__(
        self,
        vision: VisionInfo,
        text: TextInfo | None,
        num_classes: int | None = None,
        captions: Sequence[str] = (),
        dim: int = 32,
        max_length: int = 6,
    ):
        super().__init__()
        self.vocab = WordList(sorted({w for c in captions for w in c.lower().split()}))
        self.max_length = max_length
        self.image = nn.Linear(vision.pooled_dim, dim)
        self.embed = nn.Embedding(len(self.vocab), dim)
        self.out = nn.Linear(dim, len(self.vocab))

    def prefill(self, image: EncoderOutput) -> tuple[torch.Tensor]:
        return (self.image(image.pooled),)

    def caption_logits(self, state: tuple[torch.Tensor], input_ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.embed(input_ids) + state[0][:, None]))

    def decode_step(self, state: tuple[torch.Tensor], input_ids: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.caption_logits(state, input_ids[:, -1:])[:, -1].float(), dim=-1)
