"""Image-text retrieval (Flickr30k / COCO protocol; study 003's paired-caption alignment).

Both directions are scored with the ALBEF/BLIP ``itm_eval`` semantics (studies.md §3.3):

* image -> text: every image queries the caption gallery; its rank is the best position of
  any caption that matches it;
* text -> image: every caption of the split queries the images; its rank is the best
  position of a matching image.

R@K = 100 x mean(rank <= K) per direction, rsum = the sum of R@K over both directions and
every K, r_mean = rsum / (2 x #K) (itm_eval's ``r_mean``, in %; the default main metric),
mean rank = the mean 1-based rank. What "matches" means:

* by default a caption matches only its own image;
* when the split gives ``identities`` they are a shared key (study 003: the ordered class
  pair; person search: the person), and a caption matches every image with its key;
* when the split declares a fixed candidate set (``Split.candidates`` with
  ``candidate_keys``, e.g. one caption per ordered class pair), image -> text ranks those
  candidates instead of the split's captions; text -> image still queries with the split's
  captions.

Ranks, chance levels and tie-breaking come from ``_retrieval.py`` (exact chance for every
K, 100% once K reaches the gallery). Training uses a symmetric InfoNCE whose positives are
every pair in the batch with the same image (or key), so another caption of the same image
is never pushed away as a negative.

Intervals come from the engine (core/bootstrap.py): the task resamples its unit, the image (or
the shared key), and a drawn unit brings every query it carries and its items into the gallery,
so the interval covers which distractors a test set holds as well as which queries.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.types import Batch, Dataset, Field, Metrics, Register, Split, SplitLoader, TaskSpec, UnitScores

from ._retrieval import TIE_BREAK, chance_levels, retrieval_metrics
from .person_search import _encode_all, identity_info_nce

NAME = "image_text_retrieval"
DIRECTIONS = ("i2t", "t2i")


@dataclass(frozen=True)
class Problem:
    """Who matches whom in one split: keys of images, query captions and gallery captions."""

    image_keys: np.ndarray  # [N]
    captions: list[str]  # the split's captions, flattened: text -> image queries
    caption_image: np.ndarray  # [Q] the image each caption belongs to
    caption_keys: np.ndarray  # [Q]
    gallery: list[str]  # image -> text gallery: the candidates, or the captions themselves
    gallery_keys: np.ndarray  # [G]
    matching: str  # "own image" or "shared key"
    candidate_source: str  # "dataset candidate set" or "split captions"

    @classmethod
    def from_split(cls, split: Split) -> Problem:
        if split.captions is None:
            raise ValueError(f"split {split.name!r} has no captions, which {NAME} needs")
        empty = [i for i, caps in enumerate(split.captions) if not caps]
        if empty or len(split) == 0:
            raise ValueError(f"split {split.name!r}: {len(empty)} images without captions (first {empty[:5]}) or no images")
        shared = split.identities is not None
        image_keys = np.asarray(split.identities) if shared else np.arange(len(split))
        caption_image = np.asarray([i for i, caps in enumerate(split.captions) for _ in caps])
        captions = [c for caps in split.captions for c in caps]
        caption_keys = image_keys[caption_image]
        if split.candidates is not None:
            if not shared or split.candidate_keys is None or len(split.candidate_keys) != len(split.candidates):
                raise ValueError(
                    f"split {split.name!r} declares {len(split.candidates)} candidate captions; they need one "
                    "candidate_key each and images with identities (the key they match on)"
                )
            gallery, gallery_keys, source = list(split.candidates), np.asarray(split.candidate_keys), "dataset candidate set"
        else:
            gallery, gallery_keys, source = captions, caption_keys, "split captions"
        return cls(
            image_keys,
            captions,
            caption_image,
            caption_keys,
            gallery,
            gallery_keys,
            "shared key" if shared else "own image",
            source,
        )


def grouped_info_nce(model: Any, batch: Batch) -> torch.Tensor:
    """Symmetric InfoNCE with every same-image (or same-key) pair of the batch a positive."""
    keys = batch.identities if batch.identities is not None else batch.index.to(batch.images.device)
    return identity_info_nce(model.encode_image(batch.images), model.encode_text(batch.text), model.logit_scale(), keys)


def mean_rank_chance(query_keys: np.ndarray, gallery_keys: np.ndarray) -> float:
    """Expected best rank of a random ordering: r relevant among G sit at a uniform r-subset of
    positions, whose minimum has mean (G + 1) / (r + 1)."""
    values, counts = np.unique(gallery_keys, return_counts=True)
    r = counts[np.searchsorted(values, query_keys)]
    return float(np.mean((len(gallery_keys) + 1) / (r + 1)))


def with_totals(values: dict[str, float], ks: Sequence[int]) -> dict[str, float]:
    """``values`` with rsum (every R@K of both directions added) and r_mean = rsum / (2 x #K)."""
    rsum = sum(values[f"{d}_R{k}"] for d in DIRECTIONS for k in ks)
    return values | {"rsum": rsum, "r_mean": rsum / (len(DIRECTIONS) * len(ks))}


def per_unit_scores(
    problem: Problem,
    results: dict[str, dict[str, Any]],
    ks: Sequence[int],
    n_resamples: int | None,
    counted: Callable[[str], dict[str, Any]],
) -> UnitScores:
    """What the engine resamples: images (own-image matching) or keys (shared keys). A drawn
    unit brings its image queries, its captions' queries, and its items into the gallery: the
    test set the resample stands for has only the drawn units to confuse a query with.

    A query's best rank on a resample is 1 + the items ranked above it, each counted as often as
    its unit was drawn (``counted(direction)["ahead"]``: ``retrieval_metrics(count_ahead=True)``,
    asked for on the first resample only, so splits without an interval never count); the
    query's own unit adds nothing, its items all being relevant. A fixed candidate set is not
    part of the sample and stays whole. Every metric is then a mean over the drawn queries, and
    rsum and r_mean add the two directions' means.
    """
    labels = np.unique(problem.image_keys)
    query_units = {"i2t": problem.image_keys, "t2i": problem.caption_keys}
    resampled_gallery = {"i2t": problem.candidate_source == "split captions", "t2i": True}
    query_index = {d: np.searchsorted(labels, units) for d, units in query_units.items()}

    @functools.cache
    def ahead(direction: str) -> tuple[Any, np.ndarray]:
        """[Q, I] counts of items above each query's best relevant item, and each column's unit index."""
        result = counted(direction)
        return result["ahead"], np.searchsorted(labels, result["gallery_identities"])

    def statistic(drawn: np.ndarray) -> dict[str, float]:
        times = np.bincount(np.searchsorted(labels, drawn), minlength=len(labels)).astype(np.float64)
        values: dict[str, float] = {}
        for d in DIRECTIONS:
            if resampled_gallery[d]:
                counts, columns = ahead(d)
                position = 1.0 + counts @ times[columns]
            else:
                position = results[d]["first_position"].astype(np.float64)
            weight = times[query_index[d]]
            for k in ks:
                values[f"{d}_R{k}"] = 100.0 * float(weight @ (position <= k)) / weight.sum()
            values[f"{d}_mean_rank"] = float(weight @ position) / weight.sum()
        return with_totals(values, ks)

    unit = "key" if problem.matching == "shared key" else "image"
    why = (
        "the gallery is redrawn with the units, and a unit drawn twice adds the same distractors twice: with "
        "fewer distinct distractors than a real test set, R@K rises on every resample"
    )
    lifted = [f"{d}_R{k}" for d in DIRECTIONS if resampled_gallery[d] for k in ks] + ["rsum", "r_mean"]
    scale = {f"{d}_R{k}": (0.0, 100.0) for d in DIRECTIONS for k in ks} | {"rsum": (0.0, 200.0 * len(ks)), "r_mean": (0.0, 100.0)}
    return UnitScores(
        unit=unit,
        statistic=statistic,
        units=labels,
        n_resamples=n_resamples,
        off_centre=dict.fromkeys(lifted, why),
        bounds=scale,
    )


class ImageTextRetrievalTask:
    objective = "embedding"
    required_fields: frozenset[Field] = frozenset({"image", "captions"})

    def __init__(self, *, ks: Sequence[int], main: str, bootstrap: int, chunk_size: int):
        self.ks = tuple(ks)
        self.main_metric = main
        self.bootstrap = bootstrap
        self.chunk_size = chunk_size

    def num_classes(self, dataset: Dataset) -> None:
        return None

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        if batch.text is None:
            raise ValueError(f"{NAME} needs one caption per image in every batch")
        return grouped_info_nce(model, batch)

    def unit_scores(
        self, model: Any, split: Split, loader: SplitLoader
    ) -> tuple[Problem, dict[str, dict[str, Any]], Callable[[str], dict[str, Any]]]:
        """Per-query results of both directions (``retrieval_metrics`` output, by direction), and
        a function that ranks one direction again counting the items ahead (for the interval)."""
        problem = Problem.from_split(split)
        modes = {m: m.training for m in model.modules()} if isinstance(model, nn.Module) else {}
        for module in modes:  # restored below: a trainer may keep a frozen tower in eval mode
            module.training = False
        try:
            with torch.inference_mode(), loader.autocast():
                images = _encode_all(loader.images(split), model.encode_image, len(split))
                texts = _encode_all(loader.texts(problem.captions), model.encode_text, len(problem.captions))
                gallery = (
                    texts
                    if problem.gallery is problem.captions
                    else _encode_all(loader.texts(problem.gallery), model.encode_text, len(problem.gallery))
                )
        finally:
            for module, training in modes.items():
                module.training = training
        sides = {
            "i2t": (problem.image_keys, problem.gallery_keys, images, gallery),
            "t2i": (problem.caption_keys, problem.image_keys, texts, images),
        }

        def ranked(direction: str, count_ahead: bool = False) -> dict[str, Any]:
            qids, gids, queries, candidates = sides[direction]
            return retrieval_metrics(
                qids,
                gids,
                query_features=queries,
                gallery_features=candidates,
                ks=self.ks,
                chunk_size=self.chunk_size,
                count_ahead=count_ahead,
            )

        results = {direction: ranked(direction) for direction in DIRECTIONS}
        return problem, results, functools.partial(ranked, count_ahead=True)

    def evaluate(self, model: Any, split: Split, loader: SplitLoader) -> Metrics:
        problem, results, counted = self.unit_scores(model, split, loader)
        sides = {"i2t": (problem.image_keys, problem.gallery_keys), "t2i": (problem.caption_keys, problem.image_keys)}
        values: dict[str, float] = {}
        chance: dict[str, float] = {}
        for direction, result in results.items():
            qids, gids = sides[direction]
            expected = chance_levels(qids, gids, ks=self.ks)
            for k in self.ks:
                values[f"{direction}_R{k}"] = result[f"R{k}"]
                chance[f"{direction}_R{k}"] = expected[f"R{k}"]
            recalls = [values[f"{direction}_R{k}"] for k in sorted(self.ks)]
            if recalls != sorted(recalls) or not all(0.0 <= v <= 100.0 for v in recalls):
                raise AssertionError(f"{direction} R@K not monotone in K or outside [0, 100]: {recalls}")
            values[f"{direction}_mean_rank"] = float(result["first_position"].mean())
            chance[f"{direction}_mean_rank"] = mean_rank_chance(qids, gids)
        values, chance = with_totals(values, self.ks), with_totals(chance, self.ks)

        units = {name: ("rank" if name.endswith("mean_rank") else "%") for name in values}
        details = {
            "n_images": len(split),
            "n_captions": len(problem.captions),
            "n_candidates": len(problem.gallery),
            "candidate_source": problem.candidate_source,
            "matching": problem.matching,
            "ks": list(self.ks),
            "rsum": "sum of R@K over i2t and t2i and every K; r_mean = rsum / (2 x #K)",
            "tie_break": TIE_BREAK,
            "i2t_mean_relevant": float(results["i2t"]["n_relevant"].mean()),
            "t2i_mean_relevant": float(results["t2i"]["n_relevant"].mean()),
        }
        return Metrics(
            values=values,
            main=self.main_metric,
            chance=chance,
            units=units,
            details=details,
            per_unit=per_unit_scores(problem, results, self.ks, self.bootstrap, counted),
            no_interval="the task option bootstrap = 0 turned the interval off" if self.bootstrap == 0 else "",
        )


def build(
    *, ks: Sequence[int] = (1, 5, 10), main: str = "r_mean", bootstrap: int = 1000, chunk_size: int = 1024
) -> ImageTextRetrievalTask:
    where = f"task {NAME!r}"
    if not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks) or len(set(ks)) != len(ks):
        raise UserError(f"{where}: option ks={list(ks)}; give distinct positive integers, e.g. ks = [1, 5, 10].")
    allowed = ["r_mean", "rsum"] + [f"{d}_R{k}" for d in DIRECTIONS for k in ks]
    if main not in allowed:
        raise UserError(f"{where}: option main={main!r} is not one of {allowed} (a recall, r_mean or rsum; higher is better).")
    if bootstrap < 0:
        raise UserError(f"{where}: option bootstrap={bootstrap}; use 0 (off) or a positive count.")
    if chunk_size < 1:
        raise UserError(f"{where}: option chunk_size={chunk_size}; use a positive integer.")
    return ImageTextRetrievalTask(ks=sorted(ks), main=main, bootstrap=bootstrap, chunk_size=chunk_size)


@hookimpl
def vlbench_register_tasks(register: Register) -> None:
    register(
        TaskSpec(
            name=NAME,
            factory=build,
            check_options=lambda options: build(**options),  # cheap: the same checks at suite validation
            description=(
                "Image-text retrieval (Flickr30k/COCO itm_eval): i2t and t2i R@K, r_mean (main), rsum and mean "
                "rank; matches own image, or a shared key; a dataset may fix the candidate captions."
            ),
            options={"ks": [1, 5, 10], "main": "r_mean", "bootstrap": 1000, "chunk_size": 1024},
            objective="embedding",
            required_fields=frozenset({"image", "captions"}),
            default_dataset="paired_composites",
        )
    )
