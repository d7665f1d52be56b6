"""kill -9 at each stage of a tiny run, then resume; several processes on one suite. Slow:
every case starts fresh Python processes (about 10 s of imports each)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from vlbench.results import read_record

DRIVER = Path(__file__).with_name("reliability_driver.py")

TINY = """
[suite]
name = "tiny"
seeds = {seeds}
device = "cpu"

[train]
epochs = 1
batch_size = 8
max_steps_per_epoch = 2
eval_batch_size = 64
cost_batch_sizes = [1]
cost_budget_s = 0.02

[[tasks]]
name = "person_search"
options = {{ bootstrap = 10 }}
dataset_options = {{ identities = [6, 4, 4], views_per_identity = 2, image_size = [64, 32] }}

[[vision]]
name = "timm:resnet10t"
image_size = [64, 32]

[[text]]
name = "clip_text"
options = {{ width = 32, layers = 1, heads = 2, context_length = 16 }}

[[fusions]]
name = "contrastive"
options = {{ embed_dim = 16 }}
"""


def tiny_suite(folder: Path, runs: int) -> Path:
    path = folder / "tiny.toml"
    path.write_text(TINY.format(seeds=list(range(runs))))
    return path


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "VLBENCH_RUNS_DIR": ""}


def driver(tmp: Path, *kill: str) -> subprocess.CompletedProcess:
    args = [
        sys.executable,
        str(DRIVER),
        str(tmp / "tiny.toml"),
        str(tmp / "results"),
        str(tmp / "cache"),
        str(tmp / "log"),
        *kill,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=600, env=env())


def events(tmp: Path) -> Counter:
    log = tmp / "log"
    return Counter(line.strip() for line in log.read_text().splitlines()) if log.exists() else Counter()


STAGES = ["building", "validating", "testing", "measuring cost", "writing", "observing"]


@pytest.mark.slow
@pytest.mark.parametrize("stage", STAGES)
def test_kill_9_at_each_stage_then_resume(stage, tmp_path):
    tiny_suite(tmp_path, runs=2)
    killed = driver(tmp_path, stage, "1")  # the second run dies at `stage`
    assert killed.returncode == -9, killed.stdout + killed.stderr
    folder = tmp_path / "results" / "tiny"
    first = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    assert len(first) == (2 if stage == "observing" else 1)
    if stage == "writing":
        assert list(folder.glob(".*.tmp")), "the kill should leave the temp record behind"

    resumed = driver(tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    records = [read_record(p) for p in sorted(folder.glob("*.json"))]
    assert len(records) == 2 and all(r["status"] == "ok" for r in records)  # none corrupt, none lost
    assert len({r["run_id"] for r in records}) == 2  # none duplicated
    assert all(folder.joinpath(name).stat().st_mtime_ns == mtime for name, mtime in first.items())  # finished ones untouched
    assert not list(folder.glob(".*.tmp"))  # the dead writer's temp record is gone
    seen = events(tmp_path)
    started = {k.split()[1]: n for k, n in seen.items() if k.startswith("started")}
    redone = [run_id for run_id, n in started.items() if n > 1]
    expected_redone = 0 if stage in ("building", "observing") else 1  # killed before training started / after it was saved
    assert len(redone) == expected_redone and all(n <= 2 for n in started.values()), seen
    assert all(seen[f"observed {r['run_id']}"] == 1 for r in records), seen  # every observer saw each record once


@pytest.mark.slow
def test_three_processes_on_one_suite_train_each_run_once(tmp_path):
    tiny_suite(tmp_path, runs=4)
    cmd = [
        sys.executable,
        "-m",
        "vlbench.cli",
        "run",
        str(tmp_path / "tiny.toml"),
        "--results-dir",
        str(tmp_path / "results"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--runs-dir",
        "",
    ]
    procs = [
        subprocess.Popen(cmd, cwd=tmp_path, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    trained = sum(int(re.search(r"(\d+) ok,", " ".join(out.split())).group(1)) for out, _ in outs)
    assert trained == 4, outs  # each run trained by exactly one process
    records = [read_record(p) for p in (tmp_path / "results" / "tiny").glob("*.json")]
    assert len(records) == 4 and all(r["status"] == "ok" for r in records)
    assert not list((tmp_path / "results" / "tiny" / ".claims").glob("*.claim"))  # every claim released


@pytest.mark.slow
def test_a_claim_of_a_killed_process_is_taken_over(tmp_path):
    """A process killed while it holds a run's claim does not block that run for the next one."""
    tiny_suite(tmp_path, runs=1)
    killed = driver(tmp_path, "validating", "0")
    assert killed.returncode == -9
    claims = list((tmp_path / "results" / "tiny" / ".claims").glob("*.claim"))
    assert len(claims) == 1  # left behind by the dead process
    resumed = driver(tmp_path)
    assert resumed.returncode == 0 and "1 ok" in resumed.stdout, resumed.stdout + resumed.stderr
    assert not claims[0].exists()  # taken over, then released by the resuming process
    assert read_record(next((tmp_path / "results" / "tiny").glob("*.json")))["status"] == "ok"
