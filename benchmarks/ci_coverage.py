"""Coverage of the engine's 95% intervals, and chance levels against random scorers.

Coverage: for each task, many simulated test sets are drawn from one population; each gets its
metrics and the engine's interval (core/bootstrap.py, the task's own unit), and coverage is the
share of intervals that contain the true value: the mean of the metric over a separate, larger
batch of test sets of the same size. Target 0.93-0.97 for a nominal 95%.

* person_search: identities with their own difficulty; each image and caption is its identity's
  centre plus noise; t2i R1/R5/mAP/mINP through the task's ranking code, resampling identities.
  The caption-level bootstrap the task used before is shown beside it for comparison.
* multilabel: images with long-tailed labels; scores = signal x label + noise; macro mAP and F1
  through the task's own metric code (scikit-learn for the truth and the point values, the
  task's weighted recomputation on each resample), resampling images.
* image_text_retrieval: images with 1-3 captions and their own difficulty, own-image matching;
  both directions through the task's Problem and per-unit scores, resampling images with their
  queries and their gallery items.
* captioning: images with 5 reference captions around a hidden sentence and a model caption
  that garbles it at the image's own rate; per-image CIDEr-D (pycocoevalcap, IDF of the test
  set) as the task computes it, resampling images.

Chance: each task's exact chance level against the mean of random scorers (person_search and
image_text_retrieval: one random similarity matrix per trial; multilabel: random scores), with
the z score. Captioning has no chance level (its records carry named baselines instead).

    python benchmarks/ci_coverage.py                  # 200 test sets per task
    python benchmarks/ci_coverage.py --sets 400 --resamples 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from vlbench.bootstrap import intervals
from vlbench.plugins.tasks import image_text_retrieval as itr
from vlbench.plugins.tasks._caption_metrics import caption_scores
from vlbench.plugins.tasks._multilabel_resample import resampled_headline
from vlbench.plugins.tasks._retrieval import chance_levels, retrieval_metrics
from vlbench.plugins.tasks.multilabel import MultilabelTask, multilabel_metrics
from vlbench.types import Metrics, Split, UnitScores

PS_METRICS = ("R1", "R5", "mAP", "mINP")
ML_METRICS = ("mAP", "F1_samples", "F1_micro", "F1_macro")
ITR_METRICS = ("i2t_R1", "t2i_R1", "t2i_R5", "i2t_mean_rank", "r_mean")
ITR_KS = (1, 5)
WORDS = [f"w{i}" for i in range(40)]


def person_search_set(rng: np.random.Generator, n_ids: int = 40, dim: int = 32) -> dict:
    """One test split: 2-4 images per identity, 2 captions per image, per-identity noise."""
    per_id = rng.integers(2, 5, size=n_ids)
    gids = np.repeat(np.arange(n_ids), per_id)
    qids = np.repeat(gids, 2)
    centres = rng.standard_normal((n_ids, dim))
    hardness = rng.uniform(0.6, 2.2, size=n_ids)  # some people are much harder to find
    images = centres[gids] + rng.standard_normal((len(gids), dim)) * hardness[gids, None]
    captions = centres[qids] + rng.standard_normal((len(qids), dim)) * hardness[qids, None]
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    captions /= np.linalg.norm(captions, axis=1, keepdims=True)
    result = retrieval_metrics(qids, gids, similarity=torch.from_numpy(captions @ images.T))
    return {"qids": qids, "values": {m: result[m] for m in PS_METRICS}, "per_query": result["per_query"]}


def multilabel_set(rng: np.random.Generator, n: int = 150, classes: int = 5) -> dict:
    prevalence = np.array([0.5, 0.3, 0.15, 0.1, 0.06])[:classes]
    y = (rng.random((n, classes)) < prevalence).astype(np.int8)
    y[rng.integers(n, size=classes), np.arange(classes)] = 1  # every class has a positive
    logits = 1.2 * (2 * y - 1) + rng.standard_normal((n, classes)) * 1.5
    probs = 1 / (1 + np.exp(-logits))
    return {"y": y, "probs": probs}


def coverage_person_search(sets: int, truth_sets: int, resamples: int, rng: np.random.Generator) -> list[str]:
    truth = {m: np.mean([person_search_set(rng)["values"][m] for _ in range(truth_sets)]) for m in PS_METRICS}
    hits = {(unit, m): 0 for unit in ("identity", "caption") for m in PS_METRICS}
    widths = {key: [] for key in hits}
    for s in range(sets):
        data = person_search_set(rng)
        qids = data["qids"]
        for unit, groups in (("identity", qids), ("caption", np.arange(len(qids)))):
            per_unit = UnitScores(
                unit=unit, scores={m: (groups, data["per_query"][m]) for m in PS_METRICS}, n_resamples=resamples
            )
            ci, _ = intervals(Metrics(values=data["values"], main="R1", per_unit=per_unit), seed=s)
            for m in PS_METRICS:
                hits[unit, m] += ci[m][0] <= truth[m] <= ci[m][1]
                widths[unit, m].append(ci[m][1] - ci[m][0])
    return [
        f"person_search  {m:<13} {unit:<9} {truth[m]:7.2f} {hits[unit, m] / sets:9.3f} {np.mean(widths[unit, m]):8.2f}"
        for unit in ("identity", "caption")
        for m in PS_METRICS
    ]


def coverage_multilabel(sets: int, truth_sets: int, resamples: int, rng: np.random.Generator) -> list[str]:
    task = MultilabelTask(threshold=0.5, tune_thresholds=False, zero_division=0.0)
    truth_runs = [multilabel_set(rng) for _ in range(truth_sets)]
    truth = {m: np.mean([task.headline(d["y"], d["probs"])[m] for d in truth_runs]) for m in ML_METRICS}
    hits = dict.fromkeys(ML_METRICS, 0)
    widths = {m: [] for m in ML_METRICS}
    for s in range(sets):
        d = multilabel_set(rng)
        y, probs = d["y"], d["probs"]
        per_unit = UnitScores(
            unit="image", statistic=resampled_headline(y, probs, 0.5, 0.0), units=np.arange(len(y)), n_resamples=resamples
        )
        ci, _ = intervals(Metrics(values=task.headline(y, probs), main="mAP", per_unit=per_unit), seed=s)
        for m in ML_METRICS:
            hits[m] += ci[m][0] <= truth[m] <= ci[m][1]
            widths[m].append(ci[m][1] - ci[m][0])
    return [
        f"multilabel     {m:<13} {'image':<9} {truth[m]:7.2f} {hits[m] / sets:9.3f} {np.mean(widths[m]):8.2f}" for m in ML_METRICS
    ]


def retrieval_set(rng: np.random.Generator, n_images: int = 60, dim: int = 32) -> dict:
    """One test split for image_text_retrieval: 1-3 captions per image around its centre,
    per-image difficulty; metrics and per-unit scores exactly as the task builds them."""
    per_image = rng.integers(1, 4, size=n_images)
    captions = tuple(tuple(f"{i}-{c}" for c in range(n)) for i, n in enumerate(per_image))
    split = Split(name="test", ids=[str(i) for i in range(n_images)], load_image=lambda i: None, captions=captions)
    problem = itr.Problem.from_split(split)
    centres = rng.standard_normal((n_images, dim))
    hardness = rng.uniform(0.5, 2.0, size=n_images)
    images = centres + rng.standard_normal((n_images, dim)) * hardness[:, None]
    texts = (
        centres[problem.caption_image] + rng.standard_normal((len(problem.captions), dim)) * hardness[problem.caption_image, None]
    )
    images, texts = torch.from_numpy(images), torch.from_numpy(texts)
    results = {
        "i2t": retrieval_metrics(
            problem.image_keys, problem.gallery_keys, query_features=images, gallery_features=texts, ks=ITR_KS, count_ahead=True
        ),
        "t2i": retrieval_metrics(
            problem.caption_keys, problem.image_keys, query_features=texts, gallery_features=images, ks=ITR_KS, count_ahead=True
        ),
    }
    per_unit = itr.per_unit_scores(problem, results, ITR_KS, None, results.__getitem__)  # results already count ahead
    values = dict(per_unit.statistic(per_unit.units))
    return {"values": values, "per_unit": per_unit}


def captioning_set(rng: np.random.Generator, n_images: int = 40, length: int = 8) -> dict:
    """Hidden sentences of random words; 5 references each swap 20 % of the words; the model's
    caption swaps the image's own share (10-70 %). Per-image CIDEr-D as the task computes it."""

    def garble(sentence: np.ndarray, rate: float) -> str:
        swap = rng.random(len(sentence)) < rate
        return " ".join(np.where(swap, rng.choice(WORDS, len(sentence)), sentence))

    hidden = [rng.choice(WORDS, length) for _ in range(n_images)]
    rates = rng.uniform(0.1, 0.7, size=n_images)
    references = {i: [garble(h, 0.2) for _ in range(5)] for i, h in enumerate(hidden)}
    candidates = {i: garble(h, r) for i, (h, r) in enumerate(zip(hidden, rates, strict=True))}
    per_image = caption_scores(candidates, references).per_image["CIDEr-D"]
    ids = np.arange(n_images)
    scores = np.array([per_image[i] for i in ids])
    return {"values": {"CIDEr-D": float(scores.mean())}, "per_unit": UnitScores(unit="image", scores={"CIDEr-D": (ids, scores)})}


def coverage_of(
    task: str, make_set, metrics: tuple[str, ...], sets: int, truth_sets: int, resamples: int, rng: np.random.Generator
) -> list[str]:
    """Coverage of the engine's interval for a task whose simulated sets carry their UnitScores."""
    truth = {m: np.mean([make_set(rng)["values"][m] for _ in range(truth_sets)]) for m in metrics}
    hits = dict.fromkeys(metrics, 0)
    widths = {m: [] for m in metrics}
    unit = ""
    for s in range(sets):
        data = make_set(rng)
        per_unit = UnitScores(**{**data["per_unit"].__dict__, "n_resamples": resamples})
        ci, block = intervals(Metrics(values=data["values"], main=metrics[0], per_unit=per_unit), seed=s)
        unit = block["unit"]
        for m in metrics:
            hits[m] += ci[m][0] <= truth[m] <= ci[m][1]
            widths[m].append(ci[m][1] - ci[m][0])
    return [f"{task:<14} {m:<13} {unit:<9} {truth[m]:7.2f} {hits[m] / sets:9.3f} {np.mean(widths[m]):8.2f}" for m in metrics]


def chance_tables(trials: int, rng: np.random.Generator) -> list[str]:
    rows = []
    # person_search: a split of 40 identities, 2-4 images each, 2 captions per image.
    per_id = rng.integers(2, 5, size=40)
    gids = np.repeat(np.arange(40), per_id)
    qids = np.repeat(gids, 2)
    exact = chance_levels(qids, gids)
    # Each trial: one random scorer on the whole split; its metric is the mean over queries.
    runs = [retrieval_metrics(qids, gids, similarity=torch.from_numpy(rng.random((len(qids), len(gids))))) for _ in range(trials)]
    for name in ("R1", "R5", "R10", "mAP", "mINP"):
        values = np.array([r[name] for r in runs])
        z = (values.mean() - exact[name]) / (values.std(ddof=1) / np.sqrt(trials))
        rows.append(f"person_search  {name:<6} {exact[name]:8.3f} {values.mean():10.3f} {z:6.2f}")
    # multilabel: 20 images (the small split where the mean prevalence was wrong), 5 classes.
    y = (rng.random((20, 5)) < np.array([0.5, 0.3, 0.2, 0.1, 0.05])).astype(np.int8)
    y[0] = 1
    _, chance, _ = multilabel_metrics(y, rng.random(y.shape), 0.5, 0.0)
    values = 100 * np.array([average_precision_score(y, rng.random(y.shape), average="macro") for _ in range(trials)])
    z = (values.mean() - chance["mAP"]) / (values.std(ddof=1) / np.sqrt(trials))
    rows.append(
        f"multilabel     {'mAP':<6} {chance['mAP']:8.3f} {values.mean():10.3f} {z:6.2f}   (mean prevalence {100 * y.mean(0).mean():.3f})"
    )
    # image_text_retrieval: 60 images with 1-3 captions, own-image matching; a random scorer per trial.
    per_image = rng.integers(1, 4, size=60)
    caption_image = np.repeat(np.arange(60), per_image)
    images = np.arange(60)
    sides = {"i2t": (images, caption_image), "t2i": (caption_image, images)}
    for direction, (qids, gids) in sides.items():
        exact = chance_levels(qids, gids, ks=ITR_KS) | {"mean_rank": itr.mean_rank_chance(qids, gids)}
        runs = [
            retrieval_metrics(qids, gids, similarity=torch.from_numpy(rng.random((len(qids), len(gids)))), ks=ITR_KS)
            for _ in range(trials)
        ]
        simulated = {f"R{k}": np.array([r[f"R{k}"] for r in runs]) for k in ITR_KS}
        simulated["mean_rank"] = np.array([r["first_position"].mean() for r in runs])
        for name, values in simulated.items():
            z = (values.mean() - exact[name]) / (values.std(ddof=1) / np.sqrt(trials))
            rows.append(f"retrieval      {direction}_{name:<9} {exact[name]:8.3f} {values.mean():10.3f} {z:6.2f}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", type=int, default=200, help="simulated test sets per task")
    parser.add_argument("--truth-sets", type=int, default=2000, help="test sets averaged for the true value")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=4000, help="random scorers per chance level")
    parser.add_argument("--tasks", nargs="+", default=["person_search", "multilabel", "retrieval", "captioning", "chance"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    if {"person_search", "multilabel", "retrieval", "captioning"} & set(args.tasks):
        print(f"coverage of the 95% interval over {args.sets} test sets ({args.resamples} resamples; target 0.93-0.97)")
        print(f"{'task':<14} {'metric':<13} {'unit':<9} {'truth':>7} {'coverage':>9} {'width':>8}")
        if "person_search" in args.tasks:
            print("\n".join(coverage_person_search(args.sets, args.truth_sets, args.resamples, rng)), flush=True)
        if "multilabel" in args.tasks:
            print("\n".join(coverage_multilabel(args.sets, args.truth_sets, args.resamples, rng)), flush=True)
        if "retrieval" in args.tasks:
            print(
                "\n".join(coverage_of("retrieval", retrieval_set, ITR_METRICS, args.sets, args.truth_sets, args.resamples, rng)),
                flush=True,
            )
        if "captioning" in args.tasks:
            print(
                "\n".join(
                    coverage_of("captioning", captioning_set, ("CIDEr-D",), args.sets, args.truth_sets, args.resamples, rng)
                ),
                flush=True,
            )
    if "chance" in args.tasks:
        print(f"\nchance level vs {args.trials} random scorers (|z| < 3)")
        print(f"{'task':<14} {'metric':<6} {'exact':>8} {'simulated':>10} {'z':>6}")
        print("\n".join(chance_tables(args.trials, rng)))
    print(f"({time.perf_counter() - start:.0f} s on a shared CPU)")


if __name__ == "__main__":
    main()
