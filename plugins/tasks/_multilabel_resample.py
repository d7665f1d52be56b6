"""Multi-label headline metrics on a bootstrap resample, without copying the resample.

A resample draws images with replacement; an image drawn k times counts k times. Recomputing
mAP and F1 with scikit-learn on the copied arrays costs about 50 ms for a few hundred images,
so 1000 resamples per split took close to a minute. Here every image keeps its place and
carries its draw count as a weight, and each class's scores are sorted once:

* AP is scikit-learn's ``average_precision_score``: sum over score thresholds, highest first,
  of (recall step) x precision, where tied scores form one threshold; with weights, the true
  and false positives above a threshold are cumulative sums of the weights in sorted order.
  Classes without a drawn positive are left out, as ``MultilabelTask.headline`` leaves them.
* F1 (samples, micro, macro) is scikit-learn's ``f1_score`` = 2 TP / (2 TP + FP + FN) with
  ``zero_division`` where the denominator is 0: per image (samples, a weighted mean), over
  the summed counts (micro) or per class (macro, over every class).

tests/test_multilabel.py checks every value against ``MultilabelTask.headline`` (scikit-learn)
on the copied resample.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def resampled_headline(
    y_true: np.ndarray, probs: np.ndarray, threshold: float, zero_division: float
) -> Callable[[np.ndarray], dict[str, float]]:
    """A function of one resample's drawn image indices (repeats allowed) -> mAP and F1s in %."""
    y = np.asarray(y_true, dtype=np.float64)
    scores = np.asarray(probs, dtype=np.float64)
    n, classes = y.shape
    predicted = (scores >= threshold).astype(np.float64)

    order = np.argsort(-scores, axis=0, kind="stable")  # per class, highest score first
    sorted_scores = np.take_along_axis(scores, order, axis=0)
    sorted_y = np.take_along_axis(y, order, axis=0)
    # The last position of each run of equal scores: one threshold each.
    group_ends = [np.flatnonzero(np.append(np.diff(sorted_scores[:, c]) != 0, True)) for c in range(classes)]

    true_positive, false_positive, false_negative = y * predicted, (1 - y) * predicted, y * (1 - predicted)
    per_image_denominator = (y + predicted).sum(1)
    per_image_f1 = np.divide(
        2 * true_positive.sum(1),
        per_image_denominator,
        out=np.full(n, float(zero_division)),
        where=per_image_denominator > 0,
    )

    def f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
        denominator = 2 * tp + fp + fn
        return np.divide(2 * tp, denominator, out=np.full(np.shape(tp), float(zero_division)), where=denominator > 0)

    def headline(drawn: np.ndarray) -> dict[str, float]:
        weight = np.bincount(np.asarray(drawn), minlength=n).astype(np.float64)
        aps = []
        for c in range(classes):
            w = weight[order[:, c]]
            tps = np.cumsum(w * sorted_y[:, c])[group_ends[c]]
            if tps[-1] == 0:
                continue  # no positive drawn: AP undefined, left out of the mean
            seen = np.cumsum(w)[group_ends[c]]
            precision = np.divide(tps, seen, out=np.zeros_like(tps), where=seen > 0)
            aps.append(float(np.diff(tps, prepend=0.0) @ precision) / tps[-1])
        tp, fp, fn = weight @ true_positive, weight @ false_positive, weight @ false_negative
        return {
            "mAP": 100.0 * float(np.mean(aps)) if aps else float("nan"),
            "F1_samples": 100.0 * float(weight @ per_image_f1) / weight.sum(),
            "F1_micro": 100.0 * float(f1(tp.sum(), fp.sum(), fn.sum())),
            "F1_macro": 100.0 * float(f1(tp, fp, fn).mean()),
        }

    return headline
