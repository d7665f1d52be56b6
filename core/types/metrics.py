"""What a task's evaluation returns: :class:`Metrics`, and the per-unit scores the engine
resamples for confidence intervals (:class:`UnitScores`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class UnitScores:
    """What the engine resamples for the confidence intervals of a split's headline metrics.

    A resample draws ``unit`` labels with replacement (as many as there are) and brings in
    every item of each drawn unit: for person search the unit is an identity and its items are
    its queries (the gallery stays fixed); for multi-label classification the unit is an image.
    """

    unit: str  # what is drawn: "identity", "image", ...
    # metric -> (unit label of each scored item [n], the item's score [n]); the metric is their mean
    scores: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    # For metrics that are no mean of item scores (macro mAP, micro F1): one resample's unit
    # labels (an array, repeats allowed) -> {metric: value}; called once per resample.
    statistic: Callable[[np.ndarray], Mapping[str, float]] | None = None
    units: Any = None  # every unit label (needed with ``statistic`` alone); default: those in scores
    n_resamples: int | None = None  # None: the engine's default (1000); 0: no interval
    # Metrics whose resamples the task knows to sit off-centre -> why: the engine places their
    # interval around the point value (the resamples' spread, their mean moved onto the point).
    # Image-text retrieval redraws its gallery, and a unit drawn twice is the same distractor
    # twice: fewer distinct distractors lift R@K on every resample.
    off_centre: Mapping[str, str] = field(default_factory=dict)
    # metric -> (lowest, highest) it can take: an interval moved onto the point value stays within
    bounds: Mapping[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Metrics:
    values: Mapping[str, float]  # metric name -> value (percent where the task says so)
    main: str  # the key of values used for selection and ranking
    chance: Mapping[str, float] = field(default_factory=dict)  # what a random scorer gets, where that exists
    # Named reference scores where no chance level exists (BLEU, CIDEr): baseline -> metric -> value,
    # e.g. {"most frequent train caption": {"CIDEr-D": 4.1}}. A task reports a chance level or a
    # baseline for its main metric; records, the terminal line and the leaderboard show either.
    baselines: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    ci95: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # filled by the engine from per_unit
    units: Mapping[str, str] = field(default_factory=dict)  # e.g. {"R1": "%"}
    details: Mapping[str, Any] = field(default_factory=dict)  # sizes, per-class tables, ...
    per_unit: UnitScores | None = None  # what the engine bootstraps (core/bootstrap.py)
    no_interval: str = ""  # why there is no per_unit, recorded in place of an interval
