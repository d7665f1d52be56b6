"""The engine's bootstrap (core/bootstrap.py): units, reproducibility, the recorded block."""

from __future__ import annotations

import numpy as np
import pytest

from vlbench.bootstrap import intervals, intervals_overlap
from vlbench.types import Metrics, UnitScores


def clustered(rng: np.random.Generator, n_units: int = 40, per_unit: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Items whose scores are identical within a unit: the worst case for an item-level bootstrap."""
    groups = np.repeat(np.arange(n_units) * 3 + 1, per_unit)  # non-contiguous labels
    scores = np.repeat(100.0 * (rng.random(n_units) < 0.4), per_unit)
    return groups, scores


def metrics_with(per_unit: UnitScores | None, **kwargs) -> Metrics:
    return Metrics(values={"R1": 0.0}, main="R1", chance={"R1": 0.0}, per_unit=per_unit, **kwargs)


def test_interval_is_reproducible_by_seed_and_records_how_it_was_drawn():
    groups, _ = clustered(np.random.default_rng(0))
    scores = np.random.default_rng(0).random(len(groups))
    m = metrics_with(UnitScores(unit="identity", scores={"R1": (groups, scores)}))
    ci, block = intervals(m, seed=3, n_resamples=500)
    assert intervals(m, seed=3, n_resamples=500)[0] == ci
    assert intervals(m, seed=4, n_resamples=500)[0] != ci
    lo, hi = ci["R1"]
    assert lo <= scores.mean() <= hi and lo < hi
    assert block == {
        "method": "percentile bootstrap",
        "level": 0.95,
        "unit": "identity",
        "n_units": 40,
        "n_resamples": 500,
        "seed": 3,
        "metrics": ["R1"],
        "items_per_unit": {"min": 5, "max": 5},
    }


def test_resampling_whole_units_widens_the_interval_of_correlated_items():
    """Five identical items per unit carry the information of one: the unit-level interval is
    about sqrt(5) times the item-level one, and matches the normal theory over units."""
    groups, scores = clustered(np.random.default_rng(1))
    by_unit = intervals(metrics_with(UnitScores(unit="identity", scores={"R1": (groups, scores)})), seed=0)[0]["R1"]
    by_item = intervals(metrics_with(UnitScores(unit="query", scores={"R1": (np.arange(len(scores)), scores)})), seed=0)[0]["R1"]
    width_unit, width_item = by_unit[1] - by_unit[0], by_item[1] - by_item[0]
    assert width_unit / width_item == pytest.approx(np.sqrt(5), rel=0.2)
    unit_means = scores[::5]
    assert width_unit == pytest.approx(2 * 1.96 * unit_means.std() / np.sqrt(len(unit_means)), rel=0.2)


def test_a_statistic_and_item_means_give_the_same_interval_for_a_mean():
    groups, scores = clustered(np.random.default_rng(2))
    units = np.unique(groups)
    by_mean = intervals(metrics_with(UnitScores(unit="identity", scores={"R1": (groups, scores)})), seed=5, n_resamples=300)[0]
    statistic = lambda drawn: {"R1": float(np.concatenate([scores[groups == u] for u in drawn]).mean())}  # noqa: E731
    by_statistic = intervals(
        metrics_with(UnitScores(unit="identity", statistic=statistic, units=units)), seed=5, n_resamples=300
    )[0]
    assert by_statistic["R1"] == pytest.approx(by_mean["R1"])


def test_units_may_hold_different_items_per_metric():
    """Person search with i2t: captions and images of one identity are resampled together."""
    rng = np.random.default_rng(3)
    captions, images = np.repeat(np.arange(10), 4), np.repeat(np.arange(10), 2)
    per_unit = UnitScores(unit="identity", scores={"t2i_R1": (captions, rng.random(40)), "i2t_R1": (images, rng.random(20))})
    ci, block = intervals(metrics_with(per_unit), seed=0, n_resamples=200)
    assert set(ci) == {"t2i_R1", "i2t_R1"} and block["items_per_unit"] == {"min": 2, "max": 4}


def test_no_per_unit_scores_records_the_reason_never_a_silent_empty_interval():
    ci, block = intervals(metrics_with(None), seed=0)
    assert ci == {} and "no per-unit scores" in block["reason"]
    ci, block = intervals(metrics_with(None, no_interval="one number per split"), seed=0)
    assert block == {"reason": "one number per split"}
    ci, block = intervals(metrics_with(UnitScores(unit="identity", scores={"R1": ([0], [1.0])}, n_resamples=0)), seed=0)
    assert ci == {} and "n_resamples = 0" in block["reason"]
    ci, block = intervals(metrics_with(None, ci95={"R1": (1.0, 2.0)}), seed=0)
    assert ci == {"R1": [1.0, 2.0]} and "by the task itself" in block["method"]


def test_a_metric_that_never_moves_gets_a_zero_width_interval():
    groups = np.repeat(np.arange(30), 2)
    ci, _ = intervals(metrics_with(UnitScores(unit="identity", scores={"R10": (groups, np.full(60, 100.0))})), seed=0)
    assert ci["R10"] == [100.0, 100.0]
    ci, _ = intervals(metrics_with(UnitScores(unit="identity", scores={"R1": ([7, 7], [0.0, 100.0])})), seed=0)
    assert ci["R1"] == [50.0, 50.0]  # one unit: every resample is the sample


def test_bad_unit_scores_raise():
    with pytest.raises(ValueError, match="2 unit labels for 3 scores"):
        intervals(metrics_with(UnitScores(unit="identity", scores={"R1": ([1, 2], [1.0, 2.0, 3.0])})), seed=0)
    with pytest.raises(ValueError, match="no units"):
        intervals(metrics_with(UnitScores(unit="identity")), seed=0)


def test_overlap():
    assert intervals_overlap([1, 3], [2, 4]) and intervals_overlap([2, 4], [1, 3]) and intervals_overlap([1, 2], [2, 3])
    assert intervals_overlap([1, 2], [3, 4]) is False
    assert intervals_overlap(None, [1, 2]) is None


def test_an_off_centre_statistic_keeps_its_spread_around_the_point_value():
    """A task that knows some resamples sit off-centre (retrieval's redrawn gallery lifts R@K) gets
    those metrics' intervals with the same width, moved so that the resamples' mean falls on the
    point value, kept within the metric's bounds, and the reason recorded; other metrics are untouched."""
    scores = np.random.default_rng(1).random(50) * 100
    units = np.arange(50)

    def lifted(drawn: np.ndarray) -> dict[str, float]:
        resample = not np.array_equal(drawn, units)
        mean = float(scores[drawn].mean())
        near_full = 99.7 + 0.1 * (mean - float(scores.mean())) - (2.0 if resample else 0.0)  # its resamples sit lower
        return {"R1": mean + (7.0 if resample else 0.0), "R5": near_full, "AP": mean + (7.0 if resample else 0.0)}

    def metrics(**kw) -> Metrics:
        per_unit = UnitScores(unit="image", statistic=lifted, units=units, bounds={"R5": (0.0, 100.0)}, **kw)
        return Metrics(values=lifted(units), main="R1", per_unit=per_unit)

    plain, _ = intervals(metrics(), seed=2)
    centred, block = intervals(metrics(off_centre={"R1": "why", "R5": "why too"}), seed=2)
    (lo, hi), (clo, chi) = plain["R1"], centred["R1"]
    point = float(scores.mean())
    assert chi - clo == pytest.approx(hi - lo) and clo - lo == pytest.approx(chi - hi)
    assert -7.5 < clo - lo < -6.5  # the lift, less the resampled means' own small scatter around the point
    assert abs((clo + chi) / 2 - point) < 1.5 and (lo + hi) / 2 - point > 5.5
    assert plain["R5"][1] < 99.0 and centred["R5"][0] > 98.5 and centred["R5"][1] == 100.0  # moved up, not past 100
    assert centred["AP"] == plain["AP"]
    assert block["method"] == "percentile bootstrap"
    assert block["centred_on_the_point_value"] == {"R1": "why", "R5": "why too"}
