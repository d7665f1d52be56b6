"""From dataset splits to device tensors with the run's transforms.

Images are resized per sample in the DataLoader (sizes differ in real datasets) and
normalised on the device; captions are tokenized by the run's text encoder (``Batch.text``)
and, for generation, by the model's own target tokenizer (``Batch.targets``) in the main
process, so tokenizers never need to be pickled into workers.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.utils.data as tud
from torchvision.transforms.v2 import functional as TF

from vlbench.types.datasets import Batch, Split
from vlbench.types.encoders import TokenizedText, VisionInfo


def usable_cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a Slurm allocation), not the host's."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Precision:
    device: torch.device
    dtype: torch.dtype | None  # autocast dtype, None = fp32
    channels_last: bool

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def resolve_precision(device: torch.device, amp: str, channels_last: bool) -> Precision:
    """ "auto": bf16 autocast on CUDA, fp32 on CPU (CPU autocast is slower for these models)."""
    dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    if amp == "auto":
        dtype = torch.bfloat16 if device.type == "cuda" else None
    return Precision(device, dtype, channels_last)


class _Images(tud.Dataset):
    """(split index, caption index) pairs -> (resized uint8 CHW image, caption, index)."""

    def __init__(self, split: Split, size: tuple[int, int], pairs: Sequence[tuple[int, int]], hflip: bool, seed: int):
        self.split, self.size, self.pairs, self.hflip, self.seed = split, size, pairs, hflip, seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        index, caption = self.pairs[i]
        image = torch.from_numpy(np.ascontiguousarray(self.split.load_image(index))).permute(2, 0, 1)
        image = TF.resize(image, list(self.size), antialias=True)
        if self.hflip and np.random.default_rng((self.seed, i)).random() < 0.5:
            image = TF.horizontal_flip(image)
        if caption < 0:
            text = ""
        else:
            assert self.split.captions is not None  # pairs name a caption only for a split that has them
            text = self.split.captions[index][caption]
        return image, text, index


def _collate(items):
    images, texts, indices = zip(*items, strict=True)
    return torch.stack(images), list(texts), torch.tensor(indices)


class SplitBatcher:
    """Batches splits for training and evaluation: the engine's implementation of the
    :class:`vlbench.types.SplitLoader` protocol that tasks receive."""

    def __init__(
        self,
        vision: VisionInfo,
        tokenize: Callable[[Sequence[str]], TokenizedText] | None,
        precision: Precision,
        batch_size: int,
        num_workers: int = 0,
        num_classes: int | None = None,
        targets: Callable[[Sequence[str]], torch.Tensor] | None = None,
    ):
        self.vision = vision
        self.tokenize = tokenize
        self.precision = precision
        self.device = precision.device
        self.batch_size = batch_size
        # A suite written for a many-core GPU host still runs on a laptop without DataLoader's
        # oversubscription warning; workers only load images, so results do not change.
        self.num_workers = min(num_workers, usable_cpu_count())
        self.num_classes = num_classes
        self.targets = targets  # the model's own caption ids (generation), not the text encoder's
        self._mean = torch.tensor(vision.mean, device=self.device).view(1, 3, 1, 1) * 255
        self._std = torch.tensor(vision.std, device=self.device).view(1, 3, 1, 1) * 255

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.precision.autocast()

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        images = (images.to(self.device, non_blocking=True).float() - self._mean) / self._std
        return images.contiguous(memory_format=torch.channels_last) if self.precision.channels_last else images

    def _loader(self, dataset: _Images, batch_size: int, shuffle_seed: int | None = None) -> tud.DataLoader:
        generator = None if shuffle_seed is None else torch.Generator().manual_seed(shuffle_seed)
        return tud.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=generator is not None,
            generator=generator,
            num_workers=self.num_workers,
            collate_fn=_collate,
            pin_memory=self.device.type == "cuda",
            drop_last=generator is not None and len(dataset) > batch_size,
        )

    def images(self, split: Split, batch_size: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        pairs = [(i, -1) for i in range(len(split))]
        for images, _, index in self._loader(
            _Images(split, self.vision.input_size, pairs, False, 0), batch_size or self.batch_size
        ):
            yield index, self.normalise(images)

    def texts(self, texts: Sequence[str], batch_size: int | None = None) -> Iterator[tuple[torch.Tensor, TokenizedText]]:
        assert self.tokenize is not None, "texts() needs the run's text encoder"
        step = batch_size or self.batch_size
        for start in range(0, len(texts), step):
            chunk = list(texts[start : start + step])
            yield torch.arange(start, start + len(chunk)), self.tokenize(chunk).to(self.device)

    def train_batches(
        self, split: Split, *, epoch: int, seed: int, hflip: bool, max_steps: int = 0
    ) -> Generator[Batch, None, None]:
        """One epoch: every (image, caption) pair once when the split has captions, else every image."""
        if split.captions is not None:
            pairs = [(i, c) for i, caps in enumerate(split.captions) for c in range(len(caps))]
        else:
            pairs = [(i, -1) for i in range(len(split))]
        dataset = _Images(split, self.vision.input_size, pairs, hflip, seed * 100_003 + epoch)
        for step, (images, texts, index) in enumerate(self._loader(dataset, self.batch_size, shuffle_seed=seed * 1_000 + epoch)):
            if max_steps and step >= max_steps:
                return
            yield self.batch(split, images, texts, index)

    def batch(self, split: Split, images: torch.Tensor, texts: list[str], index: torch.Tensor) -> Batch:
        identities = labels = None
        if split.identities is not None:
            identities = torch.tensor([split.identities[i] for i in index.tolist()], device=self.device)
        if split.labels is not None and self.num_classes:
            labels = torch.zeros(len(index), self.num_classes, device=self.device)
            for row, i in enumerate(index.tolist()):
                labels[row, list(split.labels[i])] = 1.0
        has_captions = split.captions is not None
        text = self.tokenize(texts).to(self.device) if self.tokenize is not None and has_captions else None
        targets = self.targets(texts).to(self.device) if self.targets is not None and has_captions else None
        return Batch(images=self.normalise(images), text=text, identities=identities, labels=labels, index=index, targets=targets)
