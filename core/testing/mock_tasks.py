"""The three mock tasks of :mod:`vlbench.testing.mocks` (one per objective): caption -> image
R@1 on identities, top-1 of multi-label logits, greedy captions by exact match."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from vlbench.types.datasets import Batch, Dataset, Field, Split
from vlbench.types.metrics import Metrics, UnitScores
from vlbench.types.tasks import SplitLoader

T = TypeVar("T")


def _given(value: T | None, what: str) -> T:
    """A field the task's ``required_fields`` promise; a dataset or batch without it gets a clear error."""
    if value is None:
        raise ValueError(f"mock task: no {what}, which the task requires")
    return value


def _clip_loss(image: torch.Tensor, text: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    logits = scale * image @ text.t()
    target = torch.arange(len(logits), device=logits.device)
    return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2


class MockRetrievalTask:
    """Each image's first caption queries every image; a hit is a top image of the same
    identity (of the same image when the split has no identities)."""

    objective = "embedding"
    required_fields: frozenset[Field] = frozenset({"image", "captions"})
    main_metric = "R1"

    def num_classes(self, dataset: Dataset) -> None:
        return None

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        return _clip_loss(model.encode_image(batch.images), model.encode_text(batch.text), model.logit_scale())

    def evaluate(self, model: Any, split: Split, loader: SplitLoader) -> Metrics:
        with torch.inference_mode(), loader.autocast():
            images = torch.cat([model.encode_image(x).float().cpu() for _, x in loader.images(split)])
            texts = torch.cat(
                [model.encode_text(t).float().cpu() for _, t in loader.texts([c[0] for c in _given(split.captions, "captions")])]
            )
        owner = torch.tensor(split.identities if split.identities is not None else range(len(split)))
        top = (texts @ images.t()).argmax(1)
        relevant = (owner[:, None] == owner[None, :]).float().sum(1)
        hits = 100.0 * (owner[top] == owner).double()
        return Metrics(
            values={"R1": hits.mean().item()},
            main="R1",
            chance={"R1": 100.0 * (relevant / len(split)).mean().item()},
            units={"R1": "%"},
            per_unit=UnitScores(
                unit="identity" if split.identities is not None else "image", scores={"R1": (owner.numpy(), hits.numpy())}
            ),
        )


class MockClassificationTask:
    """A hit is a top-scoring class among the sample's labels; BCE training."""

    objective = "classification"
    required_fields: frozenset[Field] = frozenset({"image", "labels"})
    main_metric = "top1"

    def num_classes(self, dataset: Dataset) -> int:
        return len(dataset.class_names)

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(
            model.classify(batch.images, batch.text).float(), _given(batch.labels, "labels")
        )

    def evaluate(self, model: Any, split: Split, loader: SplitLoader) -> Metrics:
        captions = split.captions if getattr(model, "text", None) is not None else None  # None: the model reads no text
        logits = []
        with torch.inference_mode(), loader.autocast():
            for index, images in loader.images(split):
                text = None
                if captions is not None:
                    _, text = next(iter(loader.texts([captions[i][0] for i in index.tolist()], len(index))))
                logits.append(model.classify(images, text).float().cpu())
        scores = torch.cat(logits)
        labels = _given(split.labels, "labels")
        hits = [c in row for c, row in zip(scores.argmax(1).tolist(), labels, strict=True)]
        chance = sum(len(row) for row in labels) / (len(split) * scores.shape[1])
        return Metrics(
            values={"top1": 100.0 * sum(hits) / len(hits)},
            main="top1",
            chance={"top1": 100.0 * chance},
            units={"top1": "%"},
            per_unit=UnitScores(unit="image", scores={"top1": (list(range(len(hits))), [100.0 * h for h in hits])}),
        )


class MockCaptioningTask:
    """Greedy captions; main metric: % of images whose caption equals one of its references.
    No chance level: the baseline is the most frequent train caption, written for every image."""

    objective = "generation"
    required_fields: frozenset[Field] = frozenset({"image", "captions"})
    main_metric = "exact"

    def __init__(self) -> None:
        self.train_captions: list[str] = []

    def num_classes(self, dataset: Dataset) -> None:
        return None

    def fusion_inputs(self, dataset: Dataset) -> dict[str, Any]:
        self.train_captions = [c for caps in _given(dataset.splits["train"].captions, "train captions") for c in caps]
        return {"captions": self.train_captions}

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        from vlbench.objectives.generation import teacher_forced_loss

        targets = _given(batch.targets, "caption targets")
        return teacher_forced_loss(model.caption_logits(batch.images, targets), targets, model.caption_vocab.pad_id)

    def evaluate(self, model: Any, split: Split, loader: SplitLoader) -> Metrics:
        vocab, written, references = model.caption_vocab, [], _given(split.captions, "captions")
        with torch.inference_mode(), loader.autocast():
            for _, images in loader.images(split):
                state = model.prefill(images)
                ids = torch.full((len(images), 1), vocab.bos_id, dtype=torch.long, device=images.device)
                for _ in range(5):
                    ids = torch.cat([ids, model.decode_step(state, ids).argmax(-1, keepdim=True)], dim=1)
                written += vocab.decode(ids[:, 1:].cpu())

        def exact(captions: Sequence[str]) -> float:
            return 100.0 * sum(c in refs for c, refs in zip(captions, references, strict=True)) / len(split)

        frequent = max(sorted(set(self.train_captions)), key=self.train_captions.count) if self.train_captions else ""
        return Metrics(
            values={"exact": exact(written)},
            main="exact",
            units={"exact": "%"},
            baselines={"most frequent train caption": {"exact": exact([frequent] * len(split))}},
        )
