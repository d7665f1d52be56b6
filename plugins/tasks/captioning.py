"""Image captioning (study 002): teacher-forced training, decoded captions scored with
pycocoevalcap's BLEU-1..4 and CIDEr-D against each image's references.

Training: cross-entropy of every next token of one reference caption, PAD masked, on the
decoder's own token ids (``Batch.targets``). Evaluation: one caption per image by greedy or
beam decoding (``decoding``, ``beam_size``, ``length_penalty``, ``max_length``: 0 = the
fusion's), tokenized and scored by :mod:`._caption_metrics` (values x 100, as the COCO
leaderboard prints them). Main metric CIDEr-D with a bootstrap 95% CI over images (the
corpus CIDEr-D is the mean of the per-image scores); teacher-forced token accuracy is a
secondary figure only. No chance level exists for these scores, so two named baselines
are scored the same way: the most frequent train caption for every image, and the
caption of the nearest train image by cosine similarity of an image embedding:
``nearest_features = "pixels"`` (default) uses 8 x 8 average-pooled thumbnails of the
normalised input, fixed whatever the run learns, so the baseline says what retrieval
without learning gets; ``"model"`` uses the run's trained pooled image features (a
retrieval system built from the same encoder, a much stronger comparator). The
record's details hold a few example captions of fixed images (the first ``examples`` of
the split) and the decoding settings.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.objectives.generation import teacher_forced_loss
from vlbench.plugins.fusion._decoding import beam_search, greedy
from vlbench.types import Batch, Dataset, Field, Metrics, Register, Split, SplitLoader, TaskSpec, UnitScores

from ._caption_metrics import TOKENIZER, caption_scores, most_frequent_caption, nearest_train_caption

OPTIONS: dict[str, Any] = {
    "decoding": "beam",  # "beam" or "greedy"
    "beam_size": 3,
    "length_penalty": 1.0,  # beam ranking: log-prob / generated tokens ** length_penalty
    "max_length": 0,  # positions per decoded caption, BOS and EOS included; 0 = the fusion's max_length
    "bootstrap": 1000,  # resamples of the images for the CIDEr-D 95% CI; 0 = none
    "examples": 5,  # example captions in the record: the split's first images
    "nearest_features": "pixels",  # nearest-train-caption baseline: "pixels" (8x8 thumbnails) or "model" (trained pooled features)
}
MAIN = "CIDEr-D"
THUMBNAIL = 8  # side of the pixel embedding of the nearest-train-caption baseline


def check_options(options: Mapping[str, Any]) -> None:
    if options["decoding"] not in ("beam", "greedy"):
        raise ValueError(f'decoding must be "beam" or "greedy", got {options["decoding"]!r}')
    for name in ("beam_size", "examples", "bootstrap", "max_length"):
        if options[name] < (1 if name == "beam_size" else 0):
            raise ValueError(f"{name} must be at least {1 if name == 'beam_size' else 0}, got {options[name]}")
    if options["max_length"] == 1 or options["max_length"] == 2:
        raise ValueError(f"max_length must be 0 (the fusion's) or at least 3 (BOS, a word, EOS), got {options['max_length']}")
    if options["nearest_features"] not in ("pixels", "model"):
        raise ValueError(f'nearest_features must be "pixels" or "model", got {options["nearest_features"]!r}')
    if options["length_penalty"] < 0:
        raise ValueError(f"length_penalty must be >= 0, got {options['length_penalty']}")


class CaptioningTask:
    objective = "generation"
    required_fields: frozenset[Field] = frozenset({"image", "captions"})
    main_metric = MAIN

    def __init__(self, **options: Any):
        options = {**OPTIONS, **options}
        check_options(options)
        self.options = options
        self.train: Split | None = None
        self._train_pixels: torch.Tensor | None = None  # fixed, so computed once

    def num_classes(self, dataset: Dataset) -> None:
        return None

    def fusion_inputs(self, dataset: Dataset) -> dict[str, Any]:
        """The TRAIN captions, for the decoder's vocabulary; kept for the baselines too."""
        train = dataset.splits["train"]
        captions = [c for caps in (train.captions or ()) for c in caps if c.strip()]
        empty = [train.ids[i] for i, caps in enumerate(train.captions or ()) if not any(c.strip() for c in caps)]
        if not captions or empty:
            where = f"image {empty[0]!r} has" if empty else "the train split has"
            raise UserError(
                f"dataset {dataset.name!r}: {where} no caption; captioning needs at least one non-empty "
                f"caption per image. Fix the annotation file or drop those images."
            )
        self.train = train
        return {"captions": captions}

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        assert batch.targets is not None, "the generation objective supplies caption targets"
        return teacher_forced_loss(model.caption_logits(batch.images, batch.targets), batch.targets, model.caption_vocab.pad_id)

    def _decode(self, model: Any, state: tuple, batch: int, device: torch.device) -> torch.Tensor:
        vocab = model.caption_vocab
        length = self.options["max_length"] or model.caption_max_length
        if self.options["decoding"] == "greedy":
            return greedy(
                lambda ids: model.decode_step(state, ids), batch, vocab.bos_id, vocab.eos_id, length, vocab.pad_id, device
            )
        k = self.options["beam_size"]
        wide = tuple(None if t is None else t.repeat_interleave(k, dim=0) for t in state)
        return beam_search(
            lambda ids: model.decode_step(wide, ids),
            batch,
            vocab.bos_id,
            vocab.eos_id,
            length,
            k,
            self.options["length_penalty"],
            vocab.pad_id,
            device,
        )

    def _run(self, model: Any, split: Split, loader: SplitLoader, decode: bool) -> dict[str, Any]:
        """Decoded captions, pooled image features and teacher-forced token hits of a split."""
        vocab, captions, pooled, hits, counted = model.caption_vocab, [], [], 0, 0
        with torch.inference_mode(), loader.autocast():
            for index, images in loader.images(split):
                model_features = self.options["nearest_features"] == "model"
                pooled.append(model.vision(images).pooled.float().cpu() if model_features else _thumbnail(images))
                if not decode:
                    continue
                assert split.captions is not None, "required_fields: captions"
                state = model.prefill(images)
                targets = vocab.encode([split.captions[i][0] for i in index.tolist()], model.caption_max_length).to(images.device)
                logits = model.caption_logits(images, targets)
                real = targets[:, 1:] != vocab.pad_id
                hits += int(((logits[:, :-1].argmax(-1) == targets[:, 1:]) & real).sum())
                counted += int(real.sum())
                captions += vocab.decode(self._decode(model, state, len(images), images.device)[:, 1:].cpu())
        return {"captions": captions, "pooled": torch.cat(pooled), "token_accuracy": 100.0 * hits / max(counted, 1)}

    def evaluate(self, model: Any, split: Split, loader: SplitLoader) -> Metrics:
        if self.train is None:
            raise RuntimeError("captioning: fusion_inputs(dataset) must run before evaluate (the engine calls it at build)")
        assert split.captions is not None and self.train.captions is not None, "required_fields: captions"
        ids = list(split.ids)
        references: dict[Hashable, list[str]] = {i: list(caps) for i, caps in zip(ids, split.captions, strict=True)}
        run = self._run(model, split, loader, decode=True)
        decoded: dict[Hashable, str] = dict(zip(ids, run["captions"], strict=True))
        scores = caption_scores(decoded, references)
        values = {**scores.corpus, "token_accuracy": run["token_accuracy"]}
        pixels = self.options["nearest_features"] == "pixels"
        if not pixels:
            train_pooled = self._run(model, self.train, loader, decode=False)["pooled"]
        else:  # the train split's thumbnails do not change with training: computed once
            if self._train_pixels is None:
                self._train_pixels = self._run(model, self.train, loader, decode=False)["pooled"]
            train_pooled = self._train_pixels
        nearest = f"nearest train caption ({'pixels' if pixels else 'trained image features'})"
        candidates = {
            "most frequent train caption": most_frequent_caption(self.train.captions, ids),
            nearest: nearest_train_caption(run["pooled"], train_pooled, self.train.captions, ids),
        }
        baselines = {}
        for name, cands in candidates.items():
            corpus = caption_scores(cands, references).corpus
            baselines[name] = {k: corpus[k] for k in ("BLEU-4", MAIN)}
        # Corpus CIDEr-D is the mean of the per-image scores: the engine resamples images.
        per_unit = UnitScores(
            "image", scores={MAIN: (ids, [scores.per_image[MAIN][i] for i in ids])}, n_resamples=self.options["bootstrap"]
        )
        units = {k: "x100" for k in scores.corpus} | {"token_accuracy": "%"}
        shown = range(min(self.options["examples"], len(ids)))
        details = {
            "images": len(ids),
            "references_per_image": float(np.mean([len(r) for r in references.values()])),
            "tokenizer": TOKENIZER,
            "units": "BLEU-1..4 and CIDEr-D x 100 (pycocoevalcap Bleu(4) and Cider())",
            "decoding": {k: self.options[k] for k in ("decoding", "beam_size", "length_penalty")}
            | {"max_length": self.options["max_length"] or model.caption_max_length},
            "secondary": {"token_accuracy": "teacher-forced next-token accuracy on each image's first caption, PAD excluded"},
            "examples": [
                {
                    "image": ids[i],
                    "caption": run["captions"][i],
                    "references": references[ids[i]][:3],
                    **{name: cands[ids[i]] for name, cands in candidates.items()},
                }
                for i in shown
            ],
        }
        pruning = getattr(getattr(model, "fusion", None), "pruning", None)
        if pruning is not None:
            details["pruning"] = dict(pruning)
        return Metrics(values=values, main=MAIN, baselines=baselines, units=units, details=details, per_unit=per_unit)


def _thumbnail(images: torch.Tensor) -> torch.Tensor:
    """[B, 3 * THUMBNAIL**2] average-pooled pixels: an image embedding no training changes."""
    return torch.nn.functional.adaptive_avg_pool2d(images.float(), THUMBNAIL).flatten(1).cpu()


@hookimpl
def vlbench_register_tasks(register: Register) -> None:
    register(
        TaskSpec(
            name="captioning",
            factory=CaptioningTask,
            description=(
                "Image captioning: teacher-forced training, greedy/beam decoding, BLEU-1..4 and CIDEr-D "
                "(pycocoevalcap) vs most-frequent and nearest-train-caption baselines (study 002)."
            ),
            options=dict(OPTIONS),
            objective="generation",
            required_fields=CaptioningTask.required_fields,
            default_dataset="synthetic_captions",
            check_options=check_options,
        )
    )
