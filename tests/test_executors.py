"""Executors: shards cover every run once, bad executor input exits 2 before anything runs,
the devices executor runs each run once in pinned workers (a dead worker is its run's error
record), claims keep a held run from running twice, and the Slurm array through submitit."""

from __future__ import annotations

import multiprocessing
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

import pytest

from vlbench import cli
from vlbench.claims import ClaimBoard
from vlbench.engine import SilentReporter
from vlbench.errors import UserError
from vlbench.executors import Job, parse_shard, select_shard
from vlbench.executors.devices import DevicesExecutor, parse_devices
from vlbench.results import read_record
from vlbench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"

TINY = """
[suite]
name = "tiny"
seeds = [0, 1]

[train]
epochs = 1
batch_size = 16
max_steps_per_epoch = 2
eval_batch_size = 64
cost_batch_sizes = [1]
cost_budget_s = 0.05

[defaults.vision]
image_size = [64, 32]

[[tasks]]
name = "person_search"
options = { bootstrap = 0 }
dataset_options = { identities = [8, 4, 4], views_per_identity = 2, image_size = [64, 32] }

[[vision]]
name = "timm:resnet10t"
[[vision]]
name = "mobilenetv3_small_100"

[[text]]
name = "clip_text"
options = { width = 32, layers = 1, heads = 2, context_length = 16 }

[[fusions]]
name = "contrastive"
options = { embed_dim = 16 }
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_shards_cover_every_run_exactly_once_whatever_the_order(host):
    runs = load_suite(ROOT / "suites" / "person_search.toml", host).runs
    for n in range(1, len(runs) + 3):
        shards = [select_shard(runs, k, n) for k in range(1, n + 1)]
        ids = [run.run_id for shard in shards for run in shard]
        assert sorted(ids) == sorted(run.run_id for run in runs)  # every run, none twice
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        shuffled = list(reversed(runs))  # another process may list the runs in another order
        assert [{r.run_id for r in select_shard(shuffled, k, n)} for k in range(1, n + 1)] == [
            {r.run_id for r in s} for s in shards
        ]


@pytest.mark.parametrize("spec", ["3/2", "0/0", "0/2", "1/0", "a/b", "2", "-1/2", "1/2/3", ""])
def test_bad_shard_specs_are_refused(spec):
    with pytest.raises(UserError, match="K/N with 1 <= K <= N"):
        parse_shard(spec)


def test_devices_are_checked_against_this_machine():
    assert parse_devices("cpu,cpu", lambda: 0) == ["cpu", "cpu"]
    assert parse_devices("all", lambda: 2) == ["cuda:0", "cuda:1"]
    with pytest.raises(UserError, match="cuda:3 does not exist; torch sees 2 CUDA device"):
        parse_devices("cuda:0,cuda:3", lambda: 2)
    with pytest.raises(UserError, match="no CUDA device"):
        parse_devices("all", lambda: 0)
    with pytest.raises(UserError, match="named twice"):
        parse_devices("cuda:0,cuda:0", lambda: 2)
    with pytest.raises(UserError, match="'gpu0' is not a device"):
        parse_devices("gpu0", lambda: 2)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--executor", "nope"], "unknown executor; choose one of local, devices, slurm"),
        (["--shard", "3/2"], "K/N with 1 <= K <= N"),
        (["--shard", "0/0"], "K/N with 1 <= K <= N"),
        (["--executor", "devices", "--devices", "cuda:3"], "cuda:3 does not exist"),
        (["--devices", "cpu"], "--devices is for --executor devices"),
        (["--detach"], "are for --executor slurm"),
        (["--executor", "slurm", "--slurm-gpus", "-1"], "--slurm-gpus -1: must be >= 0"),
    ],
)
def test_bad_executor_input_exits_2_before_anything_runs(tiny, tmp_path, capsys, flags, message):
    results = tmp_path / "results"
    code = cli.main(["run", str(tiny), "--results-dir", str(results), "--runs-dir", str(tmp_path / "runs"), *flags])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not results.exists() and not (tmp_path / "runs").exists()


def test_slurm_without_submitit_says_how_to_install(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # import submitit now raises ImportError
    assert cli.main(["run", str(tiny), "--executor", "slurm", "--results-dir", str(tmp_path / "r")]) == 2
    assert "pip install 'vlbench[slurm]'" in capsys.readouterr().err


def test_a_bad_executor_table_in_the_suite_names_the_key(tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text(TINY + "\n[executor.slurm]\npartition = 'gpu'\ngpu = 2\n")
    assert cli.main(["run", str(suite), "--executor", "slurm", "--results-dir", str(tmp_path / "r")]) == 2
    assert "executor.slurm.gpu: unknown key" in capsys.readouterr().err


def _job(tmp_path: Path) -> Job:
    return Job(tmp_path / "results", tmp_path / "cache", "", False, "cpu", {"name": "devices"})


@pytest.mark.slow  # spawns workers that import torch and timm afresh
def test_devices_executor_runs_each_run_once_in_pinned_workers_and_resumes(tiny, tmp_path, host):
    runs = load_suite(tiny, host).runs
    job = _job(tmp_path)
    outcome = DevicesExecutor(["cpu", "cpu"]).run(runs, job, host, SilentReporter(), print)
    assert sorted(outcome.ok) == sorted(r.run_id for r in runs) and not outcome.failed
    records = [read_record(p) for p in (tmp_path / "results" / "tiny").glob("*.json")]
    assert len(records) == len(runs)
    executors = [r["environment"]["executor"] for r in records]
    assert {e["device"] for e in executors} == {"cpu"}
    assert len({e["worker_pid"] for e in executors}) == 2  # both workers took runs
    share = max(1, len(os.sched_getaffinity(0)) // 2)
    assert {r["environment"]["torch_threads"] for r in records} == {share}  # each worker its share of the cores
    again = DevicesExecutor(["cpu", "cpu"]).run(runs, job, host, SilentReporter(), print)
    assert sorted(again.skipped) == sorted(r.run_id for r in runs) and not again.ok  # resume: nothing trained twice


@pytest.mark.slow  # spawns workers that import torch and timm afresh
def test_a_killed_worker_becomes_its_runs_error_record_and_the_others_go_on(tiny, tmp_path, host):
    runs = load_suite(tiny, host).runs[:2]
    job = _job(tmp_path)
    result = {}
    thread = threading.Thread(
        target=lambda: result.update(outcome=DevicesExecutor(["cpu"]).run(runs, job, host, SilentReporter(), print))
    )
    thread.start()
    lock = tmp_path / "results" / "tiny" / ".claims" / f"{runs[0].run_id}.claim"
    # Generous limits: on a loaded 2-core machine spawning a worker (torch and timm imported
    # afresh) took 2 minutes and the replacement's run 5 more; they only stop a hang.
    deadline = time.monotonic() + 600
    while not lock.exists() and time.monotonic() < deadline:  # the first run is claimed: it has started
        time.sleep(0.05)
    (worker,) = multiprocessing.active_children()
    os.kill(worker.pid, signal.SIGKILL)
    thread.join(1500)
    assert not thread.is_alive(), "the executor did not finish after its worker was killed"
    outcome = result["outcome"]
    assert outcome.failed == [runs[0].run_id] and outcome.ok == [runs[1].run_id]
    crashed = read_record(tmp_path / "results" / "tiny" / f"{runs[0].run_id}.json")
    assert crashed["status"] == "error" and crashed["error"]["type"] == "WorkerDied"
    assert "died while running this run" in crashed["error"]["message"]
    assert ClaimBoard(job.results_dir, "tiny").holder(runs[0].run_id) is None  # the dead worker's claim is not honoured


def test_a_run_held_by_another_process_is_skipped_not_run_twice(tiny, tmp_path, host):
    from vlbench.executors.local import LocalExecutor

    runs = load_suite(tiny, host).runs[:2]
    job = _job(tmp_path)
    held = ClaimBoard(job.results_dir, "tiny").try_claim(runs[0].run_id)  # as another live process would
    with held:
        outcome = LocalExecutor().run(runs, job, host, SilentReporter(), print)
    assert outcome.elsewhere == [runs[0].run_id] and outcome.ok == [runs[1].run_id]
    assert not (tmp_path / "results" / "tiny" / f"{runs[0].run_id}.json").exists()


@pytest.mark.slow  # most of a minute on 2 CPU cores: .ci/run's slow step
def test_slurm_array_through_submitits_debug_cluster_writes_records_and_resubmits_nothing_finished(tiny, tmp_path, capsys):
    pytest.importorskip("submitit")
    args = [
        "run",
        str(tiny),
        "--executor",
        "slurm",
        "--slurm-cluster",
        "debug",
        "--slurm-gpus",
        "0",
        "--slurm-runs-per-task",
        "2",
        "--results-dir",
        str(tmp_path / "results"),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--shard",
        "1/2",
    ]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "submitted job array" in out and "1 task(s)" in out
    records = [read_record(p) for p in (tmp_path / "results" / "tiny").glob("*.json")]
    assert len(records) == 2 and {r["environment"]["executor"]["name"] for r in records} == {"slurm"}
    assert (tmp_path / "runs" / "tiny" / "slurm").is_dir()  # submitit's pickles and logs live under the runs folder
    assert cli.main(args) == 0
    assert "0 to run" in capsys.readouterr().out  # finished runs are not resubmitted


def test_sbatch_script_for_person_search_matches_the_snapshot(tmp_path, capsys):
    pytest.importorskip("submitit")
    code = cli.main(
        [
            "run",
            str(ROOT / "suites" / "person_search.toml"),
            "--executor",
            "slurm",
            "--dry-run",
            "--results-dir",
            str(tmp_path / "results"),
            "--runs-dir",
            str(tmp_path / "runs"),
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    script = out[out.index("#!/bin/bash") :]
    script = script.replace(str((tmp_path / "runs").resolve()), "<runs-dir>").replace(sys.executable, "<python>")
    script = re.sub(r"[ \t]+\n", "\n", script).strip() + "\n"
    assert script == (FIXTURES / "person_search.sbatch").read_text()
