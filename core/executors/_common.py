"""What every executor shares: the job description a worker needs, and running one run
under its claim with the engine's own record, resume and error semantics."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlbench.engine import Reporter, SilentReporter, SuiteOutcome, run_suite
from vlbench.executors._claim import claim
from vlbench.results import read_record
from vlbench.types import RunSpec


class WorkerDied(RuntimeError):
    """The worker process or cluster task running a run ended without its record."""


@dataclass(frozen=True)
class Job:
    """Everything a worker process needs besides the run itself; pickles to spawned and Slurm workers."""

    results_dir: Path
    cache_dir: Path
    runs_dir: str  # TensorBoard and --profile traces; "" = off
    profile: bool
    device: str  # what engine.resolve_device takes: "auto", "cpu", "cuda"
    executor: dict[str, Any] = field(default_factory=dict)  # stored as record.environment.executor


@functools.cache
def worker_host() -> Any:
    """One PluginHost per worker process (loading the entry points costs a second)."""
    from vlbench.manager import PluginHost

    return PluginHost()


def run_claimed(run: RunSpec, job: Job, host: Any, reporter: Reporter | None = None, warn: Any = None) -> dict[str, Any] | None:
    """Run ``run`` unless another process holds it or it finished before; returns its record,
    or None when it was skipped. A failure inside the run is its error record (engine semantics)."""
    import os

    from vlbench.engine import resolve_device

    os.environ["VLBENCH_RUNS_DIR"] = job.runs_dir  # read by the TensorBoard observer
    with claim(job.results_dir, run) as held:
        if not held:
            return None
        outcome = run_suite(
            [run], host, job.results_dir, job.cache_dir, resolve_device(job.device), reporter or SilentReporter(),
            warn=warn or functools.partial(print, file=sys.stderr),
            profile_dir=Path(job.runs_dir or "runs") if job.profile else None,
            environment={"executor": job.executor},
        )
    return read_record(outcome.records[0]) if outcome.records else None


def tally(outcome: SuiteOutcome, run: RunSpec, record: dict[str, Any] | None, path: Path | None = None) -> None:
    if record is None:
        outcome.skipped.append(run.run_id)
        return
    (outcome.ok if record["status"] == "ok" else outcome.failed).append(run.run_id)
    if path is not None:
        outcome.records.append(path)
