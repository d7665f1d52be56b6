"""Multi-label study (000): metrics against sklearn, threshold tuning on val only, the
fusions, the synthetic scenes, the competition CSV loader and the submission writer."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, f1_score

from vlbench import leaderboard
from vlbench.data import Precision, SplitBatcher
from vlbench.engine import run_suite
from vlbench.errors import UserError
from vlbench.plugins.datasets import multilabel_csv, synthetic_scenes
from vlbench.plugins.fusion.early import EarlyFusion
from vlbench.plugins.tasks._multilabel_resample import resampled_headline
from vlbench.plugins.tasks._retrieval import expected_random_ap
from vlbench.plugins.tasks.multilabel import MultilabelTask, multilabel_metrics, tune_thresholds
from vlbench.results import read_record
from vlbench.suite import load_suite
from vlbench.testing.contracts import check_fusion, check_task
from vlbench.types import EncoderOutput, Split, TextInfo, VisionInfo

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "multilabel"


# ---------------------------------------------------------------- metrics


def _reference_ap(y: np.ndarray, s: np.ndarray) -> float:
    """Non-interpolated AP written out: sum over distinct scores of (R_n - R_n-1) * P_n."""
    ap, prev_recall = 0.0, 0.0
    for t in np.unique(s)[::-1]:
        predicted = s >= t
        tp = (predicted & (y == 1)).sum()
        recall = tp / y.sum()
        ap += (recall - prev_recall) * tp / predicted.sum()
        prev_recall = recall
    return ap


def _random_case(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
    n, c = int(rng.integers(5, 60)), int(rng.integers(2, 9))
    y = (rng.random((n, c)) < rng.uniform(0.05, 0.6, c)).astype(np.int8)
    y[:, rng.random(c) < 0.2] = 0  # classes without positives
    y[0, 0] = 1  # at least one positive somewhere
    y[rng.random(n) < 0.15] = 0  # samples without labels
    probs = rng.random((n, c))
    if rng.random() < 0.3:
        probs = np.round(probs, 1)  # tied scores
    probs[rng.random(n) < 0.3] *= 0.4  # rows below threshold: samples with no predicted label
    thresholds: np.ndarray | float = rng.uniform(0.2, 0.8, c) if rng.random() < 0.5 else 0.5
    return y, probs, thresholds


def test_metrics_equal_sklearn_on_random_cases():
    rng = np.random.default_rng(0)
    seen_no_positive = seen_empty_prediction = 0
    for case in range(200):
        y, probs, thresholds = _random_case(rng)
        zero_division = float(case % 2)
        values, chance, details = multilabel_metrics(y, probs, thresholds, zero_division)
        pred = (probs >= np.broadcast_to(thresholds, (y.shape[1],))).astype(int)
        keep = y.sum(axis=0) > 0
        seen_no_positive += int((~keep).any())
        seen_empty_prediction += int((pred.sum(axis=1) == 0).any())
        assert values["mAP"] == pytest.approx(
            100 * average_precision_score(y[:, keep], probs[:, keep], average="macro"), abs=1e-9
        )
        assert values["mAP"] == pytest.approx(
            100 * np.mean([_reference_ap(y[:, j], probs[:, j]) for j in np.flatnonzero(keep)]), abs=1e-9
        )
        for avg in ("samples", "micro", "macro"):
            expected = 100 * f1_score(y, pred, average=avg, zero_division=zero_division)
            assert values[f"F1_{avg}"] == pytest.approx(expected, abs=1e-9), avg
        inter, sizes = (y & pred).sum(axis=1), y.sum(axis=1) + pred.sum(axis=1)
        by_hand = np.where(sizes > 0, 2 * inter / np.maximum(sizes, 1), zero_division).mean()
        assert values["F1_samples"] == pytest.approx(100 * by_hand, abs=1e-9)
        assert chance["mAP"] == pytest.approx(100 * expected_random_ap(y.sum(axis=0)[keep], len(y)).mean())
        assert details["mAP_classes"] == keep.sum() and len(details["classes_without_positives"]) == (~keep).sum()
        assert details["n_empty_predictions"] == (pred.sum(axis=1) == 0).sum()
    assert seen_no_positive > 20 and seen_empty_prediction > 20  # the edge cases were exercised


def test_resampled_headline_equals_sklearn_on_the_copied_resample():
    """The bootstrap's weighted recomputation (draw counts as weights) against MultilabelTask.headline
    (scikit-learn) on the resample copied out, repeats included: ties, classes and samples without
    labels, a class with no drawn positive, both zero_division values."""
    rng = np.random.default_rng(3)
    seen_missing_class = 0
    for case in range(150):
        y, probs, _ = _random_case(rng)
        zero_division = float(case % 2)
        task = MultilabelTask(threshold=0.5, tune_thresholds=False, zero_division=zero_division)
        headline = resampled_headline(y, probs, 0.5, zero_division)
        for drawn in (np.arange(len(y)), rng.integers(0, len(y), len(y)), rng.integers(0, len(y), max(1, len(y) // 4))):
            if not y[drawn].any():
                continue  # no positive at all: headline's mAP is NaN on both sides
            expected, got = task.headline(y[drawn], probs[drawn]), headline(drawn)
            assert got == pytest.approx(expected, abs=1e-9), case
            seen_missing_class += int((y[drawn].sum(0) == 0).any())
    assert seen_missing_class > 30


@pytest.mark.slow  # minutes on 2 CPU cores: .ci/run's slow step
def test_chance_map_equals_a_simulated_random_scorer():
    """4000 random scorers on small splits (where the mean prevalence was wrong): |z| < 3."""
    rng = np.random.default_rng(11)
    for n, c in ((20, 5), (60, 8)):
        y = (rng.random((n, c)) < rng.uniform(0.05, 0.6, c)).astype(np.int8)
        y[0, :] = 1  # every class has a positive
        _, chance, _ = multilabel_metrics(y, rng.random((n, c)), 0.5, 0.0)
        simulated = 100 * np.array([average_precision_score(y, rng.random((n, c)), average="macro") for _ in range(4000)])
        z = (simulated.mean() - chance["mAP"]) / (simulated.std(ddof=1) / np.sqrt(len(simulated)))
        assert abs(z) < 3, (n, c, simulated.mean(), chance["mAP"], z)
        assert chance["mAP"] > 100 * y.mean(axis=0).mean()  # above the prevalence on small splits


def test_all_positive_chance_and_per_class_table():
    y = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]])
    probs = np.array([[0.9, 0.2, 0.1], [0.8, 0.7, 0.3], [0.1, 0.1, 0.1], [0.6, 0.1, 0.2]])
    values, chance, details = multilabel_metrics(y, probs, 0.5, 0.0, ("a", "b", "c"))
    assert values["mAP"] == pytest.approx(100.0) and values["F1_macro"] == pytest.approx(200 / 3)  # class c: 0 by zero_division
    # exact expected AP of a random ranking of 4 samples: 3 positives (class a), 1 (class b)
    h4 = 1 + 1 / 2 + 1 / 3 + 1 / 4
    assert chance["mAP"] == pytest.approx(100 * ((h4 + 2 * (4 - h4) / 3) / 4 + h4 / 4) / 2)
    # all-positive predictor: sample F1 = 2|Y| / (|Y| + 3), the label-less sample scores 0
    assert chance["F1_samples"] == pytest.approx(100 * np.mean([2 / 4, 4 / 5, 0, 2 / 4]))
    assert details["classes_without_positives"] == ["c"]
    row = details["per_class"][1]
    assert (row["name"], row["support"], row["precision"], row["recall"], row["AP"]) == ("b", 1, 100.0, 100.0, 100.0)
    assert details["per_class"][2]["AP"] is None


def test_tuned_thresholds_maximise_each_class_f1():
    rng = np.random.default_rng(1)
    y = (rng.random((200, 4)) < 0.3).astype(int)
    y[:, 3] = 0
    probs = np.clip(y * 0.3 + rng.random((200, 4)) * 0.7, 0, 1)
    tuned = tune_thresholds(y, probs, 0.5)
    assert tuned[3] == 0.5  # no positives: the global threshold stays
    grid = np.linspace(0, 1, 101)
    for c in range(3):
        pred = probs[:, c, None] >= np.append(grid, tuned[c])  # [N, 102]: every grid threshold, then the tuned one
        tp = (pred & (y[:, c, None] == 1)).sum(axis=0)
        f1 = 2 * tp / (pred.sum(axis=0) + y[:, c].sum())
        assert f1[-1] >= f1[:-1].max() - 1e-12


# ---------------------------------------------------------------- the task


class _ScoreModel(torch.nn.Module):
    """classify() returns fixed logits, looked up by the pixel-coded sample index."""

    text = None

    def __init__(self, logits: np.ndarray):
        super().__init__()
        self.logits = torch.tensor(logits, dtype=torch.float32)

    def classify(self, images, text):
        return self.logits[(images[:, 0, 0, 0] * 255).round().long()]


def _coded(name: str, labels: list[tuple[int, ...]]) -> Split:
    return Split(
        name=name, ids=[str(i) for i in range(len(labels))], load_image=lambda i: np.full((4, 4, 3), i, np.uint8), labels=labels
    )


def test_task_tunes_thresholds_on_val_only_and_applies_them_to_test():
    rng = np.random.default_rng(0)
    labels = [tuple(np.flatnonzero(rng.random(3) < 0.4).tolist()) for _ in range(80)]
    logits = rng.normal(size=(80, 3)) + 2 * np.array([[c in row for c in range(3)] for row in labels]) - 1.5
    loader = SplitBatcher(
        VisionInfo(1, 1, (4, 4), (0.0,) * 3, (1.0,) * 3), None, Precision(torch.device("cpu"), None, False), 16, num_classes=3
    )
    task = MultilabelTask(threshold=0.5, tune_thresholds=True, zero_division=0.0)
    model = _ScoreModel(logits)

    before = task.evaluate(model, _coded("test", labels), loader)
    assert "F1_samples_tuned" not in before.values and before.details["thresholds"]["per_class"] is None

    val = task.evaluate(model, _coded("val", labels), loader)
    tuned = val.details["thresholds"]["per_class"]
    assert (
        tuned is not None and val.details["thresholds"]["tuned_on"] == "val" and "optimistic" in val.details["thresholds"]["note"]
    )

    shuffled = [labels[i] for i in rng.permutation(80)]  # a test split must not move the thresholds
    test = task.evaluate(model, _coded("test", shuffled), loader)
    assert test.details["thresholds"]["per_class"] == tuned
    assert {"F1_samples_tuned", "F1_micro_tuned", "F1_macro_tuned"} <= set(test.values)
    assert test.values["mAP"] == pytest.approx(
        multilabel_metrics(np.array([[c in row for c in range(3)] for row in shuffled]), 1 / (1 + np.exp(-logits)), 0.5, 0.0)[0][
            "mAP"
        ],
        abs=1e-4,
    )
    assert test.units["mAP"] == "%" and test.main == "mAP" and "mAP" in test.chance


@pytest.mark.parametrize("tune", [False, True])
def test_task_contract(tune, host):
    check_task(host.get("task", "multilabel"), tune_thresholds=tune)


# ---------------------------------------------------------------- fusions

CNN = VisionInfo(token_dim=32, pooled_dim=40, input_size=(64, 64), mean=(0.5,) * 3, std=(0.5,) * 3, grid_size=(3, 3))
VIT = VisionInfo(
    token_dim=24, pooled_dim=24, input_size=(64, 64), mean=(0.5,) * 3, std=(0.5,) * 3, num_prefix_tokens=1, grid_size=(2, 2)
)
TEXT = TextInfo(token_dim=16, pooled_dim=16, max_length=7)
SMALL = {"dim": 32, "heads": 4, "ff_dim": 64, "layers": 1}


@pytest.mark.parametrize(
    "name,options",
    [
        ("early", {}),
        ("early", {"image_tokenizer": "linear"}),
        ("early", {"image_tokenizer": "attention_pool", "pool_layers": 1, "pool_heads": 2}),
        ("image_only", {}),
        ("late", {}),
    ],
)
def test_fusion_contract(name, options, host):
    check_fusion(host.get("fusion", name), **options)


def test_auto_tokenizer_follows_the_backbone_and_counts_positions():
    cnn = EarlyFusion(CNN, TEXT, 5, image_tokenizer="auto", pool_layers=1, pool_heads=4, dropout=0.0, who="t", **SMALL)
    vit = EarlyFusion(VIT, TEXT, 5, image_tokenizer="auto", pool_layers=1, pool_heads=4, dropout=0.0, who="t", **SMALL)
    assert cnn.image_tokenizer == "attention_pool" and cnn.pos.shape[1] == 1 + (1 + 9) + 7
    assert vit.image_tokenizer == "linear" and vit.pos.shape[1] == 1 + (1 + 4) + 7
    pooled = EarlyFusion(
        VIT, None, 5, image_tokenizer="attention_pool", pool_layers=1, pool_heads=4, dropout=0.0, who="t", **SMALL
    )
    assert pooled.pos.shape[1] == 1 + (1 + 4)  # the ViT class token is dropped for the mean token
    assert pooled(EncoderOutput(torch.randn(2, 5, 24), torch.randn(2, 24)), None).shape == (2, 5)


def test_early_fusion_masks_text_padding_and_reads_the_caption():
    torch.manual_seed(0)
    fusion = EarlyFusion(CNN, TEXT, 5, image_tokenizer="auto", pool_layers=1, pool_heads=4, dropout=0.1, who="t", **SMALL).eval()
    image = EncoderOutput(torch.randn(2, 9, 32), torch.randn(2, 40))
    mask = torch.tensor([[True] * 7, [True] * 3 + [False] * 4])
    tokens = torch.randn(2, 7, 16)
    scrambled = tokens.clone()
    scrambled[~mask] = torch.randn(int((~mask).sum()), 16) * 5
    with torch.inference_mode():
        out = fusion(image, EncoderOutput(tokens, tokens.mean(1), mask))
        assert torch.allclose(out, fusion(image, EncoderOutput(scrambled, tokens.mean(1), mask)), atol=1e-5)
        other = tokens.clone()
        other[:, 0] = torch.randn(2, 16)  # a real text token changes the prediction
        assert not torch.allclose(out, fusion(image, EncoderOutput(other, tokens.mean(1), mask)), atol=1e-4)
    with pytest.raises(ValueError, match="image_only"):
        fusion(image, None)


def test_fusion_options_are_checked(host):
    with pytest.raises(UserError, match="image_tokenizer"):
        host.get("fusion", "early").factory(vision=CNN, text=TEXT, num_classes=3, image_tokenizer="conv")
    with pytest.raises(UserError, match="pool_heads"):
        host.get("fusion", "early").factory(vision=CNN, text=TEXT, num_classes=3, pool_heads=5)
    with pytest.raises(UserError, match="grid"):
        host.get("fusion", "early").factory(vision=VisionInfo(8, 8, (32, 32), (0.5,) * 3, (0.5,) * 3), text=TEXT, num_classes=3)


# ---------------------------------------------------------------- synthetic scenes

SCENES = {"n_images": [1500, 100, 100], "image_size": [32, 32]}


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    return synthetic_scenes.factory(tmp_path_factory.mktemp("scenes"), seed=3, **SCENES)


def test_scenes_are_long_tailed_and_captions_carry_hidden_labels(scenes):
    train = scenes.info["splits"]["train"]
    prevalence = list(train["prevalence"].values())
    assert len(scenes.class_names) == 18 and 0.62 < prevalence[0] < 0.78 and min(prevalence) < 0.01
    assert all(len(labels) >= 1 for labels in scenes.splits["train"].labels)
    assert 1.3 < train["labels_per_image"] < 1.8
    # the caption names poorly drawn objects more often than objects overall
    assert train["caption_names_share_of_poorly_drawn"] > train["caption_names_share_of_labels"] + 0.1
    image = scenes.splits["train"].load_image(0)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8


def test_scenes_are_deterministic_cached_and_captions_truthful_without_noise(tmp_path, scenes):
    again = synthetic_scenes.factory(tmp_path, seed=3, **SCENES)
    assert again.info["checksum"] == scenes.info["checksum"] and not again.info["cache"]["reused"]
    assert synthetic_scenes.factory(tmp_path, seed=3, **SCENES).info["cache"]["reused"]
    other = synthetic_scenes.factory(tmp_path, seed=4, **{**SCENES, "n_images": [50, 10, 10]})
    assert other.info["checksum"] != scenes.info["checksum"]
    truthful = synthetic_scenes.factory(tmp_path, seed=3, n_images=[300, 10, 10], image_size=[32, 32], false_mention=0.0)
    split = truthful.splits["train"]
    for caption, labels in zip(split.captions, split.labels, strict=True):
        words = caption[0].lower().replace(".", " ").replace(",", " ").split()
        assert {truthful.class_names.index(w) for w in words if w in truthful.class_names} <= set(labels)
    assert not list(tmp_path.glob(".*.tmp"))  # no half-written cache left behind


def test_scenes_options_are_checked(tmp_path):
    with pytest.raises(UserError, match="mention_poor"):
        synthetic_scenes.factory(tmp_path, seed=0, mention_poor=1.5)
    with pytest.raises(UserError, match="unknown option"):
        synthetic_scenes.factory(tmp_path, seed=0, n_imgs=[1, 1, 1])


# ---------------------------------------------------------------- competition CSV


def test_csv_reader_survives_commas_quotes_and_slashes():
    rows = {r.image_id: r for r in multilabel_csv.read_labelled_csv(FIXTURE / "train.csv")}
    assert len(rows) == 40
    assert rows["0.jpg"].caption == "A woman riding a horse, with a hat."
    assert rows["1.jpg"].caption == "A man holding a sign that says stop."
    assert rows["2.jpg"].caption == 'A quoted, proper "field" caption'
    assert rows["3.jpg"].caption == "A cat on a couch / sofa."
    assert rows["6.jpg"].caption == "A group of people, standing, around a table"
    assert rows["9.jpg"].caption == "He said hi, and left."
    assert rows["1.jpg"].labels == (0, 17)  # ids 1 and 19
    assert rows["4.jpg"].labels == (1, 11)  # ids 2 and 13: 12 is skipped
    assert multilabel_csv.LABEL_MAP == {**{i: i - 1 for i in range(1, 12)}, **{i: i - 2 for i in range(13, 20)}}  # noqa: SIM300 - a module constant, not a literal


@pytest.mark.parametrize("value", ["12", "20", "0", "x"])
def test_csv_reader_names_file_row_and_unknown_label(tmp_path, value):
    lines = (FIXTURE / "train.csv").read_text().splitlines()
    lines[3] = f"2.jpg,1 {value},A caption"
    (tmp_path / "train.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as err:
        multilabel_csv.read_labelled_csv(tmp_path / "train.csv")
    assert "train.csv" in str(err.value) and "line 4" in str(err.value) and repr(value) in str(err.value)


def test_csv_dataset_split_is_stratified_disjoint_and_oversampled_in_train_only(tmp_path):
    dataset = multilabel_csv.factory(tmp_path, seed=0, root=str(FIXTURE), oversample_min=6, split_fractions=[0.5, 0.25, 0.25])
    splits = dataset.splits
    base = lambda split: {i.split("#")[0] for i in split.ids}  # noqa: E731
    assert not base(splits["train"]) & (base(splits["val"]) | base(splits["test"]))
    assert not base(splits["val"]) & base(splits["test"])
    assert len(base(splits["train"])) + len(splits["val"]) + len(splits["test"]) == 40
    assert all("#" not in i for i in (*splits["val"].ids, *splits["test"].ids))
    info = dataset.info["oversampling"]
    assert info["copies_added"] == len(splits["train"]) - len(base(splits["train"])) > 0
    before, after = info["label_counts_before"], info["label_counts_after"]
    assert all(after[k] >= 6 for k in before if before[k]) and all(after[k] >= before[k] for k in before)
    counts = dataset.info["split"]["label_counts"]
    assert abs(counts["val"]["1"] - counts["test"]["1"]) <= 1  # label 1 spread evenly over val and test
    assert "hidden" in dataset.info["split"]["note"] and dataset.class_names[11] == "13"
    assert splits["train"].load_image(0).shape == (12, 16, 3)


def test_iterative_stratification_keeps_label_proportions():
    rng = np.random.default_rng(0)
    y = rng.random((3000, 18)) < np.geomspace(0.7, 0.005, 18)
    fold = multilabel_csv.iterative_stratification(y, [0.7, 0.15, 0.15], seed=0)
    assert np.bincount(fold).tolist() == pytest.approx([2100, 450, 450], abs=3)
    for f, share in enumerate([0.7, 0.15, 0.15]):
        assert np.abs(y[fold == f].sum(0) - share * y.sum(0)).max() <= 1.5


def test_submission_round_trips_with_empty_cells(tmp_path):
    ids = ["0.jpg", "1.jpg", "2.jpg"]
    labels = [(0, 17), (), (2,)]
    multilabel_csv.write_submission(tmp_path / "sub.csv", ids, labels)
    assert (tmp_path / "sub.csv").read_text() == (FIXTURE / "predictions.csv").read_text()
    assert multilabel_csv.read_submission(tmp_path / "sub.csv") == dict(zip(ids, labels, strict=True))
    assert multilabel_csv.read_submission(FIXTURE / "predictions.csv")["1.jpg"] == ()


def test_csv_dataset_refuses_missing_root_and_images(tmp_path):
    with pytest.raises(UserError, match="root"):
        multilabel_csv.factory(tmp_path, seed=0)
    shutil.copy(FIXTURE / "train.csv", tmp_path / "train.csv")
    with pytest.raises(UserError, match="images"):
        multilabel_csv.factory(tmp_path, seed=0, root=str(tmp_path))


# ---------------------------------------------------------------- suites


@pytest.mark.parametrize("name", ["multilabel_captions", "quickstart_multilabel"])
def test_suites_resolve_to_early_and_image_only_runs(name, host):
    suite = load_suite(ROOT / "suites" / f"{name}.toml", host)
    fusions = {run.choice("fusion").name for run in suite.runs}
    assert fusions == {"early", "image_only"}
    assert all((run.choice("text") is None) == (run.choice("fusion").name == "image_only") for run in suite.runs)
    assert all(run.choice("task").name == "multilabel" for run in suite.runs)


TINY = """
[suite]
name = "multilabel_tiny"
device = "cpu"
[train]
epochs = 1
batch_size = 16
lr = 1e-3
max_steps_per_epoch = 2
eval_batch_size = 64
cost_batch_sizes = [1, 2]
cost_budget_s = 0.02
eval_train_split = true
[[tasks]]
name = "multilabel"
options = { tune_thresholds = true }
dataset_options = { n_images = [48, 32, 32], image_size = [32, 32] }
[[vision]]
name = "mobilenetv3_small_100"
image_size = [32, 32]
[[text]]
name = "clip_text"
options = { width = 32, layers = 1, heads = 2, context_length = 24 }
[defaults.fusions]
options = { dim = 32, heads = 2, ff_dim = 64, layers = 1, pool_layers = 1, pool_heads = 2 }
[[fusions]]
name = "early"
[[fusions]]
name = "image_only"
"""


@pytest.mark.slow  # minutes on 2 CPU cores: .ci/run's slow step
def test_tiny_suite_runs_end_to_end(tmp_path, host):
    (tmp_path / "suite.toml").write_text(TINY)
    suite = load_suite(tmp_path / "suite.toml", host)
    outcome = run_suite(suite.runs, host, tmp_path / "results", tmp_path / "cache", torch.device("cpu"))
    records = {r["components"]["fusion"]["name"]: r for r in map(read_record, outcome.records)}
    assert not outcome.failed and set(records) == {"early", "image_only"}
    assert "text" in records["early"]["components"] and "text" not in records["image_only"]["components"]
    for record in records.values():
        test = record["metrics"]["splits"]["test"]
        assert test["main"] == "mAP" and {"F1_samples", "F1_samples_tuned", "loss"} <= set(test["values"])
        assert (
            test["details"]["thresholds"]["per_class"] == record["metrics"]["splits"]["val"]["details"]["thresholds"]["per_class"]
        )
        assert record["metrics"]["splits"]["train"]["values"]["mAP"] >= 0

    # Study 000's Table 1 from the records of this one suite run: the suite page's columns
    board = leaderboard.load(tmp_path / "results", tmp_path)
    (part,) = board.partitions()
    headers = [column.header for column in leaderboard.table_columns(part, detailed=True)]
    table1 = [
        "best epoch",
        "runtime (s)",
        "train mAP (%)",
        "train F1_samples (%)",
        "mAP val (%)",
        "val F1_samples (%)",
        "mAP test (%)",
        "test F1_samples (%)",
        "fp16 size (MB)",
        "GMACs",
    ]
    assert set(table1) <= set(headers), set(table1) - set(headers)
    assert part.rows[["best epoch", "runtime (s)", "train mAP (%)", "GMACs"]].notna().all().all()
