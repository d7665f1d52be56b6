"""Encoder-only throughput runs (no quality metric), --profile traces and TensorBoard scalars."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from vlbench.cli import main
from vlbench.engine import run_suite
from vlbench.results import problems, read_record
from vlbench.suite import load_suite

THROUGHPUT = """
vision = ["mobilenetv3_small_100", "convnext_atto"]

[suite]
name = "tiny_throughput"
device = "cpu"

[train]
cost_batch_sizes = [1, 2]
cost_budget_s = 0.01

[defaults.vision]
image_size = [64, 64]

[[tasks]]
name = "throughput"
options = { iterations = 3, warmup = 1 }
"""

QUALITY = """
[suite]
name = "tiny_profile"
device = "cpu"

[train]
epochs = 2
batch_size = 8
max_steps_per_epoch = 2
eval_batch_size = 64
cost_batch_sizes = [1, 2]
cost_budget_s = 0.01

[defaults.vision]
image_size = [64, 32]

[[tasks]]
name = "person_search"
options = { bootstrap = 20 }
dataset_options = { identities = [8, 4, 4], views_per_identity = 2, image_size = [64, 32] }

[[vision]]
name = "mobilenetv3_small_100"

[[text]]
name = "clip_text"
options = { width = 32, layers = 1, heads = 2, context_length = 16 }

[[fusions]]
name = "contrastive"
options = { embed_dim = 16 }
"""


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def scalar_tags(run_dir: Path) -> dict[str, list[float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = run_dir.glob("events.out.tfevents.*")
    acc = EventAccumulator(str(events))
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_throughput_suite_records_cost_and_no_quality(tmp_path, host):
    path = tmp_path / "tp.toml"
    path.write_text(THROUGHPUT)
    suite = load_suite(path, host)
    assert len(suite.runs) == 2 and all(run.choice("dataset") is None and run.choice("fusion") is None for run in suite.runs)
    outcome = run_suite(
        suite.runs, host, tmp_path / "results", tmp_path / "cache", torch.device("cpu"), runs_dir=tmp_path / "runs"
    )
    assert not outcome.failed and len(outcome.ok) == 2
    for file in outcome.records:
        record = read_record(file)  # validates
        assert record["status"] == "ok"
        assert record["metrics"] == {"quality": False, "main": None, "higher_is_better": None, "splits": {}}
        assert record["training"] == {} and record["config"]["dataset"] is None
        batches = record["cost"]["throughput"]["batches"]
        assert [e["batch"] for e in batches] == [1, 2]
        assert all(e["iterations"] == 3 and e["images_per_s"] > 0 for e in batches)
        assert record["cost"]["latency"]["vision"]["iterations"] == 3
        assert set(record["cost"]["params"]["components"]) == {"vision"}  # no fusion: the encoder alone
        assert record["config"]["fusion"] is None and set(record["cost"]["flops"]["components"]) == {"vision"}
        assert record["cost"]["memory"]["train_step"]["measured"] is False
        assert record["cost"]["problems"] == []
        tags = scalar_tags(tmp_path / "runs" / "tiny_throughput" / record["run_id"])
        assert {"cost/images_per_s/batch1", "cost/images_per_s/batch2", "cost/latency_ms/vision", "cost/params"} <= set(tags)
        assert not any(tag.startswith(("train/", "final/")) for tag in tags)


def test_cost_only_records_validate_only_without_training_or_metrics(tmp_path, host):
    path = tmp_path / "tp.toml"
    path.write_text(THROUGHPUT.replace('"mobilenetv3_small_100", ', ""))
    suite = load_suite(path, host)
    (file,) = run_suite(suite.runs, host, tmp_path / "results", tmp_path / "cache", torch.device("cpu")).records
    record = json.loads(file.read_text())
    assert problems(record) == []
    assert problems({**record, "training": {"steps": 3}})  # a cost-only record trained nothing
    assert problems({**record, "metrics": {**record["metrics"], "splits": {"test": {}}}})
    assert problems({**record, "cost": {}})
    # Without the quality flag it is a quality record again, which needs test metrics.
    assert "at metrics.splits: 'test' is a required property" in problems({**record, "metrics": {"splits": {}}})


def test_a_quality_task_still_needs_a_dataset(tmp_path, host):
    from vlbench.errors import SuiteError

    path = tmp_path / "bad.toml"
    path.write_text(
        THROUGHPUT.replace(
            'name = "throughput"\noptions = { iterations = 3, warmup = 1 }',
            'name = "throughput"\ndataset_options = { identities = [1, 1, 1] }',
        )
    )
    with pytest.raises(SuiteError, match="uses no dataset"):
        load_suite(path, host)


def test_profile_writes_traces_and_tensorboard_gets_curves_and_final_metrics(tmp_path):
    path = tmp_path / "q.toml"
    path.write_text(QUALITY)
    runs = tmp_path / "runs"
    code = main(
        [
            "run",
            str(path),
            "--results-dir",
            str(tmp_path / "results"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--runs-dir",
            str(runs),
            "--profile",
        ]
    )
    assert code == 0
    (record_file,) = (tmp_path / "results" / "tiny_profile").glob("*.json")
    record = read_record(record_file)
    run_dir = runs / "tiny_profile" / record["run_id"]
    traces = sorted(p.name for p in (run_dir / "profile").glob("*.pt.trace.json"))
    assert [t.split(".")[0] for t in traces] == ["inference", "train"], traces
    trace = json.loads((run_dir / "profile" / traces[1]).read_text())
    assert trace["traceEvents"], "empty trace"
    tags = scalar_tags(run_dir)
    main_metric = record["metrics"]["splits"]["test"]["main"]
    assert len(tags["train/loss"]) == 2  # one per epoch
    assert len(tags[f"val/{main_metric}"]) == 2
    assert tags[f"final/test/{main_metric}"] == [pytest.approx(record["metrics"]["splits"]["test"]["values"][main_metric])]
    assert "cost/images_per_s/batch2" in tags
