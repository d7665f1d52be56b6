"""Multi-label image(+caption) classification (study 000, MiniViTex).

Training: BCE-with-logits, averaged over samples and classes. Evaluation: sigmoid
probabilities from ``model.classify(images, first caption)``; a class is predicted when its
probability is **>= its threshold** (the convention of sklearn's ``precision_recall_curve``).

Metrics, all in percent and all computed by scikit-learn (see docs/metrics.md):

* ``mAP``: ``average_precision_score(average="macro")`` over the classes that have at least
  one positive in the evaluated split. AP is undefined for a class without positives
  (sklearn would score it 0 and warn); such classes are left out and listed in
  ``details["classes_without_positives"]``. Main metric.
* ``F1_samples`` / ``F1_micro`` / ``F1_macro``: ``f1_score`` with that ``average`` at the
  global threshold, over all classes, with ``zero_division`` (default 0: a sample with no
  true and no predicted label, or a class never present nor predicted, scores 0).
* per class: precision, recall, F1 and support (``precision_recall_fscore_support``), AP
  and prevalence, in ``details["per_class"]``.

Chance levels: a random scorer's mAP is exact: per class, the expected AP of a uniformly
random ranking of the split's N samples given the class's r positives
(``expected_random_ap``: (H_N + (r - 1)(N - H_N)/(N - 1))/N, above the prevalence r/N on small
splits), macro-averaged over the same classes as the metric. F1 "chance" is a named baseline:
the *all-positive* predictor (every class predicted for every sample), which a
random-threshold predictor cannot beat in expectation on rare classes.

Intervals: the engine resamples images (``UnitScores`` with unit "image") and recomputes mAP
and the three F1 scores on each resample, with each image's draw count as its weight
(``_multilabel_resample.py``, equal to scikit-learn on the copied resample).

Per-class thresholds (``tune_thresholds = true``) are tuned on the val split only: each
evaluation of a split named ``"val"`` picks, per class with positives, the threshold that
maximises that class's F1 there; an evaluation of any other split applies the thresholds of
the latest val evaluation (the engine evaluates the selected checkpoint on val right before
test). Tuned F1 scores are reported beside the global-threshold ones as ``*_tuned``; on val
itself they are optimistic by construction, which ``details["thresholds"]`` states.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    average_precision_score,
    f1_score,
    precision_recall_curve,
    precision_recall_fscore_support,
)

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.types import Batch, Dataset, Metrics, Register, Split, SplitLoader, TaskSpec, UnitScores

from ._multilabel_resample import resampled_headline
from ._retrieval import expected_random_ap

NAME = "multilabel"
OPTIONS: dict[str, Any] = {
    "threshold": 0.5,  # global decision threshold on sigmoid probabilities
    "tune_thresholds": False,  # also tune one threshold per class on val (applied to test)
    "zero_division": 0.0,  # F1/precision/recall value when undefined (sklearn's zero_division)
}
F1_AVERAGES = ("samples", "micro", "macro")
PRED_RULE = "class c is predicted when sigmoid(logit_c) >= threshold_c"


def multi_hot(labels: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """[N, C] int8 from per-sample class indices; ValueError on an index outside 0..C-1."""
    y = np.zeros((len(labels), num_classes), dtype=np.int8)
    for i, row in enumerate(labels):
        bad = [c for c in row if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"sample {i} has class indices {bad} outside 0..{num_classes - 1}")
        y[i, list(row)] = 1
    return y


def f1_scores(y_true: np.ndarray, y_pred: np.ndarray, zero_division: float) -> dict[str, float]:
    """F1 samples / micro / macro in %, sklearn's ``f1_score`` over all classes."""
    return {f"F1_{avg}": 100.0 * float(f1_score(y_true, y_pred, average=avg, zero_division=zero_division)) for avg in F1_AVERAGES}


def tune_thresholds(y_true: np.ndarray, probs: np.ndarray, default: float) -> np.ndarray:
    """Per class, the probability threshold (rule ``>=``) with the best F1 on these samples;
    ``default`` for classes without positives, whose F1 no threshold can raise above 0."""
    thresholds = np.full(y_true.shape[1], default, dtype=np.float64)
    for c in np.flatnonzero(y_true.sum(axis=0) > 0):
        precision, recall, cuts = precision_recall_curve(y_true[:, c], probs[:, c])
        precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
        f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros_like(precision), where=precision + recall > 0)
        thresholds[c] = float(cuts[int(np.argmax(f1))])
    return thresholds


def _percent_or_none(x: float) -> float | None:
    return None if math.isnan(x) else round(100.0 * x, 4)


def multilabel_metrics(
    y_true: np.ndarray,
    probs: np.ndarray,
    thresholds: float | np.ndarray,
    zero_division: float,
    class_names: Sequence[str] = (),
) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """(values, chance, details) for labels ``y_true`` [N, C] and probabilities ``probs`` [N, C]."""
    y_true = np.asarray(y_true).astype(np.int8)
    probs = np.asarray(probs, dtype=np.float64)
    per_class_threshold = np.broadcast_to(np.asarray(thresholds, dtype=np.float64), (y_true.shape[1],))
    y_pred = (probs >= per_class_threshold).astype(np.int8)
    has_pos = y_true.sum(axis=0) > 0
    if not has_pos.any():
        raise ValueError("no class has a positive sample in this split: mAP is undefined")
    ap = np.full(y_true.shape[1], np.nan)
    ap[has_pos] = average_precision_score(y_true[:, has_pos], probs[:, has_pos], average=None)
    # The unweighted mean of the per-class APs is exactly sklearn's average="macro".
    values = {"mAP": 100.0 * float(ap[has_pos].mean()), **f1_scores(y_true, y_pred, zero_division)}

    prevalence = y_true.mean(axis=0)
    everything = np.ones_like(y_true)
    positives = y_true.sum(axis=0)[has_pos]
    chance = {
        "mAP": 100.0 * float(expected_random_ap(positives, y_true.shape[0]).mean()),
        **f1_scores(y_true, everything, zero_division),
    }

    precision, recall, f1, support = precision_recall_fscore_support(y_true, y_pred, average=None, zero_division=zero_division)
    names = list(class_names) if len(class_names) == y_true.shape[1] else [str(c) for c in range(y_true.shape[1])]
    per_class = [
        {
            "index": c,
            "name": names[c],
            "support": int(support[c]),
            "prevalence": round(100.0 * float(prevalence[c]), 4),
            "AP": _percent_or_none(float(ap[c])),
            "precision": round(100.0 * float(precision[c]), 4),
            "recall": round(100.0 * float(recall[c]), 4),
            "F1": round(100.0 * float(f1[c]), 4),
            "threshold": float(per_class_threshold[c]),
        }
        for c in range(y_true.shape[1])
    ]
    details = {
        "n_samples": int(y_true.shape[0]),
        "n_classes": int(y_true.shape[1]),
        "mAP_classes": int(has_pos.sum()),
        "classes_without_positives": [names[c] for c in np.flatnonzero(~has_pos)],
        "label_cardinality": float(y_true.sum(axis=1).mean()),
        "predicted_cardinality": float(y_pred.sum(axis=1).mean()),
        "n_empty_predictions": int((y_pred.sum(axis=1) == 0).sum()),
        "n_samples_without_labels": int((y_true.sum(axis=1) == 0).sum()),
        "zero_division": zero_division,
        "chance_rule": {
            "mAP": "random scorer: exact expected AP of a random ranking per class, macro-averaged",
            "F1": "all-positive predictor: every class predicted for every sample",
        },
        "per_class": per_class,
    }
    return values, chance, details


class MultilabelTask:
    """BCE training, sklearn metrics, optional per-class thresholds tuned on val only."""

    objective = "classification"
    required_fields = frozenset({"image", "labels"})
    main_metric = "mAP"

    def __init__(self, threshold: float, tune_thresholds: bool, zero_division: float) -> None:
        if not 0.0 < threshold < 1.0:
            raise UserError(f"task {NAME!r}: threshold must be a probability strictly between 0 and 1, got {threshold!r}.")
        if zero_division not in (0.0, 1.0):
            raise UserError(f"task {NAME!r}: zero_division must be 0.0 or 1.0 (sklearn's choices), got {zero_division!r}.")
        self.threshold = float(threshold)
        self.tune = bool(tune_thresholds)
        self.zero_division = float(zero_division)
        self.class_names: tuple[str, ...] = ()
        self._tuned: np.ndarray | None = None  # from the latest val evaluation

    def num_classes(self, dataset: Dataset) -> int:
        if not dataset.class_names:
            raise UserError(
                f"task {NAME!r}: dataset {dataset.name!r} declares no class_names, so the number of classes is unknown."
            )
        self.class_names = tuple(dataset.class_names)  # labels the per-class tables of evaluate()
        return len(dataset.class_names)

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        if batch.labels is None:
            raise ValueError(f"task {NAME!r}: the batch carries no labels; the dataset must provide them")
        logits = model.classify(batch.images, batch.text)
        return F.binary_cross_entropy_with_logits(logits.float(), batch.labels.float())

    def predict(self, model: Any, split: Split, loader: SplitLoader) -> np.ndarray:
        """Logits [N, C] in split order; the first caption of each image when the model reads text."""
        captions = None
        if getattr(model, "text", None) is not None and split.captions is not None:
            captions = [caps[0] for caps in split.captions]
        out = []
        with torch.inference_mode(), loader.autocast():
            for index, images in loader.images(split):
                text = None
                if captions is not None:
                    _, text = next(iter(loader.texts([captions[i] for i in index.tolist()], batch_size=len(index))))
                out.append(model.classify(images, text).float().cpu())
        return torch.cat(out).numpy()

    def evaluate(self, model: Any, split: Split, loader: SplitLoader) -> Metrics:
        if split.labels is None:
            raise ValueError(f"task {NAME!r}: split {split.name!r} has no labels")
        logits = self.predict(model, split, loader)
        y_true = multi_hot(split.labels, logits.shape[1])
        probs = torch.sigmoid(torch.from_numpy(logits)).double().numpy()
        values, chance, details = multilabel_metrics(y_true, probs, self.threshold, self.zero_division, self.class_names)
        values["loss"] = float(F.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(y_true).float()))
        thresholds: dict[str, Any] = {"rule": PRED_RULE, "global": self.threshold, "per_class": None, "tuned_on": None}
        if self.tune:
            if split.name == "val":
                self._tuned = tune_thresholds(y_true, probs, self.threshold)
            if self._tuned is not None:
                tuned, _, tuned_details = multilabel_metrics(y_true, probs, self._tuned, self.zero_division, self.class_names)
                values.update({f"{k}_tuned": v for k, v in tuned.items() if k.startswith("F1_")})
                thresholds.update(per_class=self._tuned.tolist(), tuned_on="val")
                details["per_class_tuned"] = [
                    {k: row[k] for k in ("name", "precision", "recall", "F1", "threshold")} for row in tuned_details["per_class"]
                ]
                if split.name == "val":
                    thresholds["note"] = "tuned on this very split: the *_tuned values here are optimistic"
            else:
                thresholds["note"] = "no val evaluation came first: only the global threshold was applied"
        details["thresholds"] = thresholds
        per_unit = UnitScores(
            unit="image",
            statistic=resampled_headline(y_true, probs, self.threshold, self.zero_division),
            units=np.arange(len(y_true)),
        )
        units = {k: "%" for k in values if k != "loss"} | {"loss": "BCE-with-logits, mean over samples and classes (nats)"}
        return Metrics(values=values, main=self.main_metric, chance=chance, units=units, details=details, per_unit=per_unit)

    def headline(self, y_true: np.ndarray, probs: np.ndarray) -> dict[str, float]:
        """mAP (over the classes with positives here) and F1 at the global threshold, in %: what
        the engine recomputes on every resample of images."""
        has_pos = y_true.sum(axis=0) > 0
        ap = average_precision_score(y_true[:, has_pos], probs[:, has_pos], average=None) if has_pos.any() else np.array([np.nan])
        y_pred = (probs >= self.threshold).astype(np.int8)
        return {"mAP": 100.0 * float(np.mean(ap)), **f1_scores(y_true, y_pred, self.zero_division)}


def factory(**options: Any) -> MultilabelTask:
    return MultilabelTask(**{**OPTIONS, **options})


@hookimpl
def vlbench_register_tasks(register: Register) -> None:
    register(
        TaskSpec(
            name=NAME,
            factory=factory,
            description=(
                "Multi-label classification from an image and its caption (study 000): BCE, sigmoid + threshold; "
                "macro mAP (main), F1 samples/micro/macro, per-class P/R/F1 (sklearn)."
            ),
            options=dict(OPTIONS),
            objective="classification",
            required_fields=frozenset({"image", "labels"}),
            default_dataset="synthetic_scenes",
        )
    )
