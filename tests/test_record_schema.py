"""The record schema (vlbench/schemas/record.schema.json): every committed record and every
record the engine writes follows it; what breaks it is refused by name and path."""

from __future__ import annotations

import copy
import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import torch
from test_leaderboard import FULL_COST, XSS, make_record, write

from vlbench import engine, leaderboard
from vlbench.cli import main
from vlbench.engine import run_suite
from vlbench.results import RecordError, problems, read_record
from vlbench.suite import load_suite

COMMITTED = Path(__file__).resolve().parents[1] / "leaderboard" / "results"


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    """The shipped schema read as a third party would: the file and the jsonschema package only."""
    schema = json.loads(resources.files("vlbench").joinpath("schemas/record.schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


@pytest.mark.parametrize("path", sorted(COMMITTED.rglob("*.json")), ids=lambda p: p.relative_to(COMMITTED).as_posix())
def test_every_committed_record_follows_the_schema(validator, path):
    record = json.loads(path.read_text(encoding="utf-8"))
    assert [e.message for e in validator.iter_errors(record)] == []
    assert problems(record) == []


def test_the_committed_folder_holds_records_of_every_shape():
    records = [json.loads(p.read_text(encoding="utf-8")) for p in COMMITTED.rglob("*.json")]
    assert len(records) >= 20
    assert any(r["metrics"].get("quality") is False for r in records)  # cost-only (throughput)
    assert any(r["metrics"].get("splits", {}).get("test", {}).get("ci", {}).get("n_resamples") for r in records)
    assert all(r["environment"].get("fingerprint") for r in records)


def test_an_invalid_record_is_refused_naming_the_file_and_the_path(tmp_path):
    record = make_record("bad", cost=copy.deepcopy(FULL_COST))
    record["metrics"]["splits"]["test"]["values"]["R5"] = "high"
    record["cost"]["flops"]["unit_macs"] = "GFLOPs"  # a FLOP count labelled as MACs
    path = write(tmp_path / "results", record)
    with pytest.raises(RecordError) as info:
        read_record(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert "at metrics.splits.test.values.R5: 'high' is not of type 'number'" in message
    assert "at cost.flops.unit_macs: 'GFLOPs' does not match" in message
    board = leaderboard.load(tmp_path / "results")
    assert board.runs.empty and "at metrics.splits.test.values.R5" in dict(board.invalid)["quick/bad.json"]


def test_error_records_follow_the_schema_and_need_their_error(validator):
    failed = make_record("f", status="error")
    assert list(validator.iter_errors(failed)) == []
    del failed["error"]["message"]
    assert problems(failed) == ["at error: 'message' is a required property"]
    ok_with_error = make_record("g") | {"error": {"type": "X", "message": "y"}}
    assert problems(ok_with_error) == ["at error: {'type': 'X', 'message': 'y'} is not of type 'null'"]


def test_plugins_may_add_fields_where_the_schema_is_open(validator):
    record = make_record("open", cost=copy.deepcopy(FULL_COST))
    record["components"]["language_model"] = {"name": "smollm2_135m", "plugin": "p.lm", "options": {}, "tokenizer": "gpt2"}
    record["cost"]["prefix_lm"] = {"unit": "ms", "anything": [1, 2]}
    record["metrics"]["splits"]["test"]["details"]["per_class"] = {"a": 1}
    assert list(validator.iter_errors(record)) == []
    record["metrics"]["splits"]["test"]["extra"] = 1  # the engine owns the split block: closed
    record["surprise"] = 1  # and the top level
    assert problems(record) == [
        "at the top level: Additional properties are not allowed ('surprise' was unexpected)",
        "at metrics.splits.test: Additional properties are not allowed ('extra' was unexpected)",
    ]


def test_validate_command(tmp_path, capsys):
    results = tmp_path / "results"
    write(results, make_record("good"))
    assert main(["leaderboard", "validate", str(results)]) == 0
    write(results, make_record("evil", vision=XSS) | {"seed": "0"})
    assert main(["leaderboard", "validate", str(results)]) == 2
    out = capsys.readouterr().out
    assert "evil.json: at seed: '0' is not of type 'integer'" in " ".join(out.split()) and "1 of 2 record files" in out


def test_records_the_engine_writes_follow_the_schema(tmp_path, monkeypatch, validator, tiny_suite, host):
    """A tiny suite in process: one run that succeeds, one that fails inside (an error record)."""
    suite_path = tiny_suite("convnext_atto", epochs=1)
    suite = load_suite(suite_path, host)
    real_execute = engine.execute

    def second_fails(run, *args, **kwargs):
        if run is suite.runs[1]:
            raise RuntimeError("out of memory <script>alert(1)</script>")
        return real_execute(run, *args, **kwargs)

    monkeypatch.setattr(engine, "execute", second_fails)
    outcome = run_suite(suite.runs, host, tmp_path / "results", tmp_path / "cache", torch.device("cpu"))
    assert len(outcome.ok) == 1 and len(outcome.failed) == 1
    written = sorted((tmp_path / "results" / "tiny").glob("*.json"))
    assert len(written) == 2
    for path in written:
        record = json.loads(path.read_text(encoding="utf-8"))
        assert [f"{e.json_path}: {e.message}" for e in validator.iter_errors(record)] == [], path
    assert {json.loads(p.read_text())["status"] for p in written} == {"ok", "error"}
