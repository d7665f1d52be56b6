"""Data as tasks see it: a :class:`Dataset` of :class:`Split` columns, and the device
:class:`Batch` the core's loaders make of a split."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from vlbench.types.encoders import TokenizedText

# Per-sample fields a dataset can provide and a task can require.
Field = Literal["image", "captions", "identity", "labels"]


@dataclass(frozen=True)
class Split:
    """One split of a dataset: parallel columns, images loaded on demand."""

    name: str  # "train", "val" or "test"
    ids: Sequence[str]  # stable sample ids (file names), unique within the dataset
    load_image: Callable[[int], np.ndarray]  # index -> HWC uint8 RGB
    captions: Sequence[tuple[str, ...]] | None = None  # one or more captions per image
    identities: Sequence[int] | None = None  # person/instance id (retrieval matches on it)
    labels: Sequence[tuple[int, ...]] | None = None  # multi-label class indices 0..C-1
    # A fixed caption set image->text retrieval ranks against instead of the split's own
    # captions (study 003: one caption per ordered class pair), each with the key it matches:
    # an image matches the candidates whose key equals its identity.
    candidates: Sequence[str] | None = None
    candidate_keys: Sequence[int] | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Dataset:
    name: str  # e.g. "synthetic_pedestrians", "cuhk_pedes"
    splits: Mapping[str, Split]  # must hold "train", "val" and "test"
    class_names: tuple[str, ...] = ()  # for labelled datasets
    info: Mapping[str, Any] = field(default_factory=dict)  # provenance: root, checksum, stats


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor  # [B, 3, H, W] normalised
    text: TokenizedText | None  # one caption per image, tokenized by the run's text encoder
    identities: torch.Tensor | None  # [B] int64
    labels: torch.Tensor | None  # [B, C] float multi-hot
    index: torch.Tensor  # [B] position in the split
    # [B, T] int64 caption ids from the model's own target tokenizer (generation: the decoder's
    # vocabulary, BOS first, EOS last, PAD after), not the text encoder's; None when unused.
    targets: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(
            images=self.images.to(device, non_blocking=True),
            text=None if self.text is None else self.text.to(device),
            identities=move(self.identities),
            labels=move(self.labels),
            index=self.index,
            targets=move(self.targets),
        )
