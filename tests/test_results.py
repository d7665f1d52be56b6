"""Records: validated on write and read, written atomically, resume reads them."""

from __future__ import annotations

import json

import pytest

from vlbench.results import SCHEMA_VERSION, RecordError, finished_run_ids, problems, read_record, write_record
from vlbench.types import ResultRecord


def record(run_id="abc", status="ok", **changes) -> ResultRecord:
    test = {"values": {"R1": 40.0}, "main": "R1", "chance": {"R1": 1.0}}
    fields = dict(
        schema_version=SCHEMA_VERSION,
        run_id=run_id,
        suite="s",
        label="a+b+c/d",
        status=status,
        error=None if status == "ok" else {"type": "RuntimeError", "message": "boom"},
        components={},
        config={},
        metrics={"main": "R1", "splits": {"test": test}} if status == "ok" else {},
        selection={},
        cost={},
        training={},
        dataset={},
        environment={},
        seed=0,
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:01:00+00:00",
    )
    fields.update(changes)
    return ResultRecord(**fields)


def test_round_trip_and_resume(tmp_path):
    path = write_record(record("r1"), tmp_path)
    write_record(record("r2", status="error"), tmp_path)
    assert path == tmp_path / "s" / "r1.json"
    assert read_record(path)["metrics"]["splits"]["test"]["values"]["R1"] == 40.0
    assert finished_run_ids(tmp_path, "s") == {"r1"}  # error runs are retried
    assert not list((tmp_path / "s").glob(".*tmp"))


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"seed": "0"}, "at seed: '0' is not of type 'integer'"),
        (
            {"metrics": {"main": "R1", "splits": {"test": {"values": {"R1": float("nan")}, "main": "R1", "chance": {"R1": 1}}}}},
            "not a finite number",
        ),
        ({"metrics": {"main": "R1", "splits": {"test": {"values": {"R1": 3.0}, "main": "R1", "chance": {}}}}}, "no chance level"),
        ({"metrics": {"splits": {}}}, "at metrics: 'main' is a required property"),
        ({"metrics": {"main": "R1", "splits": {}}}, "at metrics.splits: 'test' is a required property"),
        ({"training": {"curve": [{"train_loss": float("inf")}]}}, r"training.curve\[0\].train_loss = inf is not a finite number"),
    ],
)
def test_invalid_records_are_refused_on_write(tmp_path, change, problem):
    with pytest.raises(RecordError, match=problem):
        write_record(record(**change), tmp_path)
    assert not (tmp_path / "s" / "abc.json").exists()


def test_invalid_files_are_reported_on_read(tmp_path):
    good = json.loads(json.dumps(record().__dict__))
    del good["seed"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(good))
    with pytest.raises(RecordError, match="bad.json: at the top level: 'seed' is a required property"):
        read_record(path)
    path.write_text("{not json")
    with pytest.raises(RecordError, match="unreadable"):
        read_record(path)
    assert problems([]) == ["expected a JSON object, got list"]


def test_numpy_and_torch_values_are_stored_as_plain_json(tmp_path):
    import numpy as np
    import torch

    info = {"counts": np.array([3, 4]), "mean": np.float32(0.5), "shape": torch.tensor([2, 3]), "n": torch.tensor(7)}
    path = write_record(record(dataset={"info": info}), tmp_path)
    assert read_record(path)["dataset"]["info"] == {"counts": [3, 4], "mean": 0.5, "shape": [2, 3], "n": 7}
