"""Confidence intervals owned by the engine: resample a task's units, recompute its metrics.

A task's :class:`~vlbench.types.Metrics` carries :class:`~vlbench.types.UnitScores`: the unit a
resample draws with replacement (an identity for person search, so every query of a drawn
identity comes along and the gallery stays fixed; an image for multi-label classification) and,
per headline metric, either per-item scores whose mean is the metric or a ``statistic`` that
recomputes metrics from one resample's units. :func:`intervals` runs scipy's bootstrap over
the unit labels (percentile by default, BCa on request) with a seeded generator, so the same
record always gets the same interval, and says in the record what was resampled and how
often. A task that gives no per-unit scores gets the reason recorded instead of an interval.
A task may name metrics whose resamples it knows to sit off-centre (``UnitScores.off_centre``);
their interval keeps the resamples' spread around the point value, within the metric's bounds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # the types pull in torch; the leaderboard compares intervals without it
    from vlbench.types.metrics import Metrics, UnitScores

RESAMPLES = 1000
LEVEL = 0.95
METHOD = "percentile"  # scipy's names: "percentile", "basic" or "BCa"
_BATCH = 50  # resamples per vectorised call: memory O(batch x units x metrics)


def intervals(
    metrics: Metrics, *, seed: int, n_resamples: int = RESAMPLES, method: str = METHOD, level: float = LEVEL
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """(ci95 as {metric: [low, high]}, the ``ci`` block that says how) for one split's metrics."""
    per_unit = metrics.per_unit
    if per_unit is None:
        if metrics.ci95:
            return {k: [float(lo), float(hi)] for k, (lo, hi) in metrics.ci95.items()}, {
                "method": "computed by the task itself (no per-unit scores given to the engine)"
            }
        return {}, {
            "reason": metrics.no_interval or "the task returned no per-unit scores (Metrics.per_unit), so there is no interval"
        }
    n_resamples = per_unit.n_resamples if per_unit.n_resamples is not None else n_resamples
    if n_resamples == 0:
        return {}, {"reason": metrics.no_interval or "the task asked for no resamples (n_resamples = 0)"}
    units, sums, counts = _unit_table(per_unit)
    names = list(per_unit.scores)
    ci: dict[str, list[float]] = {}
    if names:

        def mean_of_units(drawn: np.ndarray, axis: int = -1) -> np.ndarray:
            return sums[:, drawn].sum(axis=-1) / counts[:, drawn].sum(axis=-1)

        ci |= _scipy(units, mean_of_units, names, True, n_resamples, method, level, seed, per_unit)
    if (statistic := per_unit.statistic) is not None:
        statistic_names = list(statistic(units))  # the full sample: fixes the order

        def recompute(drawn: np.ndarray) -> np.ndarray:
            values = statistic(units[drawn])
            return np.array([values[name] for name in statistic_names], dtype=np.float64)

        ci |= _scipy(units, recompute, statistic_names, False, n_resamples, method, level, seed, per_unit)
    block = {
        "method": f"{method} bootstrap",
        "level": level,
        "unit": per_unit.unit,
        "n_units": int(len(units)),
        "n_resamples": int(n_resamples),
        "seed": int(seed),
        "metrics": sorted(ci),
    }
    if centred := sorted(set(per_unit.off_centre) & set(ci)):
        block["centred_on_the_point_value"] = {name: per_unit.off_centre[name] for name in centred}
    if names:
        block["items_per_unit"] = {"min": int(counts.min()), "max": int(counts.max())}  # over metrics and units
    return ci, block


def _unit_table(per_unit: UnitScores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit labels; per metric, the sum of item scores in each unit; the item count per unit."""
    labelled = [np.asarray(groups).reshape(-1) for groups, _ in per_unit.scores.values()]
    extra = [np.asarray(per_unit.units).reshape(-1)] if per_unit.units is not None else []
    units = np.unique(np.concatenate(labelled + extra)) if labelled or extra else np.empty(0)
    if len(units) == 0:
        raise ValueError("UnitScores has no units: give scores or units")
    sums = np.zeros((len(per_unit.scores), len(units)))
    counts = np.zeros((len(per_unit.scores), len(units)))
    for row, (name, (groups, scores)) in enumerate(per_unit.scores.items()):
        groups, scores = np.asarray(groups).reshape(-1), np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(groups) != len(scores) or len(scores) == 0:
            raise ValueError(f"UnitScores.scores[{name!r}]: {len(groups)} unit labels for {len(scores)} scores")
        index = np.searchsorted(units, groups)
        sums[row] = np.bincount(index, weights=scores, minlength=len(units))
        counts[row] = np.bincount(index, minlength=len(units))
    return units, sums, counts


def _scipy(
    units: np.ndarray,
    statistic: Any,
    names: list[str],
    vectorized: bool,
    n_resamples: int,
    method: str,
    level: float,
    seed: int,
    per_unit: UnitScores,
) -> dict[str, list[float]]:
    from scipy import stats  # here, not at the top: the leaderboard imports this module for intervals_overlap only

    point = np.asarray(statistic(np.arange(len(units))), dtype=np.float64).reshape(-1)
    if len(units) < 2:  # one unit: every resample is the sample itself
        return {name: [float(v), float(v)] for name, v in zip(names, point, strict=True)}
    with warnings.catch_warnings():
        # A metric that never moves (R10 = 100 on every resample) is a zero-width interval, not a warning.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (np.arange(len(units)),),
            statistic,
            n_resamples=n_resamples,
            batch=_BATCH,
            vectorized=vectorized,
            confidence_level=level,
            method=method,
            rng=np.random.default_rng(seed),
        )
    low = np.atleast_1d(result.confidence_interval.low)
    high = np.atleast_1d(result.confidence_interval.high)
    distribution = np.atleast_2d(result.bootstrap_distribution)
    # Where the task says the resamples' mean is off for a reason of its own, keep their spread
    # only, moved onto the point value but not past what the metric can take.
    centred = np.array([name in per_unit.off_centre for name in names])
    shift = np.where(centred, point - distribution.mean(axis=-1), 0.0)
    scale = np.array([per_unit.bounds.get(name, (-np.inf, np.inf)) for name in names])
    low, high = np.clip(low + shift, *scale.T), np.clip(high + shift, *scale.T)
    degenerate = np.ptp(distribution, axis=-1) == 0
    low, high = np.where(degenerate, point, low), np.where(degenerate, point, high)
    return {name: [float(lo), float(hi)] for name, lo, hi in zip(names, low, high, strict=True)}


def intervals_overlap(a: Sequence[float] | None, b: Sequence[float] | None) -> bool | None:
    """Whether two [low, high] intervals overlap; None when either is missing."""
    if not a or not b:
        return None
    return bool(a[0] <= b[1] and b[0] <= a[1])
