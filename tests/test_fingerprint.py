"""Staleness: a record whose code versions or data changed since it was written is re-run,
the old record kept aside; --dry-run says which runs are stale and why."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

import vlbench
from vlbench import cli, run_command
from vlbench.engine import run_suite
from vlbench.fingerprint import files_digest, resume_plan, run_fingerprint, stale_reason
from vlbench.manager import PluginHost
from vlbench.results import read_record, record_path
from vlbench.suite import load_suite
from vlbench.testing import mocks

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def tiny_suite(host: PluginHost, tmp_path: Path):
    mocks.tiny_run(host, tmp_path)  # writes tmp_path/tiny.toml and runs it once
    (run,) = load_suite(tmp_path / "tiny.toml", host).runs
    return run


def bump(monkeypatch, host: PluginHost, kind: str, name: str, version: str) -> None:
    """The installed plugin of ``name`` now reports ``version`` (a release with a fix)."""
    get = host.get
    monkeypatch.setattr(
        host, "get", lambda k, n: dataclasses.replace(get(k, n), version=version) if (k, n) == (kind, name) else get(k, n)
    )


def test_a_version_bump_reruns_the_run_and_keeps_the_old_record_aside(vlbench_host, tmp_path, monkeypatch):
    run = tiny_suite(vlbench_host, tmp_path)
    results, cache = tmp_path / "results", tmp_path / "cache"
    path = record_path(results, run.suite, run.run_id)
    first = read_record(path)
    assert first["environment"]["fingerprint"] == run_fingerprint(run, vlbench_host, cache)
    assert run_suite([run], vlbench_host, results, cache, torch.device("cpu"), warn=lambda _: None).skipped == [run.run_id]

    bump(monkeypatch, vlbench_host, "task", "mock_retrieval", "9.9")
    messages: list[str] = []
    outcome = run_suite([run], vlbench_host, results, cache, torch.device("cpu"), warn=messages.append)
    assert outcome.stale == [run.run_id] and outcome.ok == [run.run_id]
    (kept,) = (results / run.suite / "stale").glob(f"{run.run_id}.*.json")
    assert json.loads(kept.read_text()) == first  # moved, not rewritten
    second = read_record(path)
    assert second["started_at"] >= first["finished_at"] and "(task: mock_retrieval (" in messages[0] and "9.9))" in messages[0]
    assert run_suite([run], vlbench_host, results, cache, torch.device("cpu"), warn=lambda _: None).skipped == [run.run_id]


def test_vlbench_version_and_missing_fingerprints_make_records_stale(vlbench_host, tmp_path, monkeypatch):
    run = tiny_suite(vlbench_host, tmp_path)
    results, cache = tmp_path / "results", tmp_path / "cache"
    record = read_record(record_path(results, run.suite, run.run_id))
    assert stale_reason(record, run_fingerprint(run, vlbench_host, cache)) is None
    monkeypatch.setattr(vlbench, "__version__", "99.0")
    assert stale_reason(record, run_fingerprint(run, vlbench_host, cache)).startswith("vlbench: ")
    del record["environment"]["fingerprint"]
    assert "without a fingerprint" in stale_reason(record, run_fingerprint(run, vlbench_host, cache))


def test_dry_run_lists_stale_runs_with_the_reason(vlbench_host, tmp_path, monkeypatch, capsys):
    run = tiny_suite(vlbench_host, tmp_path)
    monkeypatch.setattr(run_command, "plugin_host", lambda: vlbench_host)
    bump(monkeypatch, vlbench_host, "dataset", "mock_dataset", "2.0")
    args = [
        "run",
        str(tmp_path / "tiny.toml"),
        "--dry-run",
        "--results-dir",
        str(tmp_path / "results"),
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert (
        f"stale {run.run_id}: " in out
        and "dataset: mock_dataset (" in out
        and "2.0)" in out
        and "1 stale (would run again)" in out
    )
    assert read_record(record_path(tmp_path / "results", run.suite, run.run_id))  # a dry run moves nothing


def test_loader_fingerprint_follows_file_content(tmp_path):
    files = [tmp_path / "a.json", tmp_path / "imgs" / "1.jpg"]
    files[1].parent.mkdir()
    files[0].write_text("[]")
    files[1].write_bytes(b"\xff\xd8 one")
    memo = tmp_path / "cache" / "checksums.json"
    first = files_digest(files, memo)
    assert files_digest(files, memo) == first and memo.is_file()
    files[1].write_bytes(b"\xff\xd8 two")  # same size, new content and mtime
    assert files_digest(files, memo) != first


def test_a_loader_dataset_is_fingerprinted_by_its_files(vlbench_host, tmp_path):
    spec = vlbench_host.get("dataset", "rstpreid")
    root = tmp_path / "data"
    (root / "RSTPReid" / "imgs").mkdir(parents=True)
    (root / "RSTPReid" / "data_captions.json").write_text("[]")
    (root / "RSTPReid" / "imgs" / "x.jpg").write_bytes(b"x")
    from vlbench.fingerprint import dataset_content

    line = dataset_content(spec, {"root": str(root)}, 0, tmp_path / "cache")
    assert line.startswith("2 files, sha256 ")
    (root / "RSTPReid" / "data_captions.json").write_text("[{}]")
    assert dataset_content(spec, {"root": str(root)}, 0, tmp_path / "cache") != line
    assert "files unavailable" in dataset_content(spec, {"root": ""}, 0, tmp_path / "cache")


def test_resume_plan_of_a_fresh_suite_is_all_pending(vlbench_host, tmp_path):
    run = tiny_suite(vlbench_host, tmp_path)
    plan = resume_plan([run], vlbench_host, tmp_path / "elsewhere", tmp_path / "cache")
    assert plan[run.run_id]["status"] == "pending"


def test_committed_records_without_a_fingerprint_are_stale_not_current():
    """Records committed before fingerprints existed are re-run (and set aside) by the next
    `vlbench run`, never taken as current; regenerated ones carry a fingerprint."""
    root = Path(__file__).resolve().parents[1] / "leaderboard" / "results"
    current = {"digest": "0" * 16, "parts": {}}
    for path in sorted(root.glob("*/*.json")):
        record = json.loads(path.read_text())
        stored = record.get("environment", {}).get("fingerprint")
        if stored is None:
            assert "without a fingerprint" in stale_reason(record, current), path
        else:
            assert len(stored["digest"]) == 16 and "vlbench" in stored["parts"], path
