"""What every executor shares: the job description a worker needs, and running one run
under its claim with the engine's own record, resume and error semantics."""

from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlbench.results import read_record

if TYPE_CHECKING:  # the engine pulls in torch, which the CLI imports only to run
    from vlbench.engine import Reporter, SuiteOutcome
    from vlbench.types.runs import RunSpec


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


def run_all(runs: Sequence[RunSpec], job: Job, host: Any, reporter: Reporter | None = None, warn: Any = None) -> SuiteOutcome:
    """Run ``runs`` one after another through the engine, which claims each (vlbench.claims)
    and skips it when it finished before or another live process holds it; a failure inside a
    run is its error record."""
    from vlbench.engine import SilentReporter, resolve_device, run_suite

    return run_suite(
        runs,
        host,
        job.results_dir,
        job.cache_dir,
        resolve_device(job.device),
        reporter or SilentReporter(),
        warn=warn or functools.partial(print, file=sys.stderr),
        profile_dir=Path(job.runs_dir or "runs") if job.profile else None,
        environment={"executor": job.executor},
        runs_dir=Path(job.runs_dir) if job.runs_dir else None,
    )


def run_claimed(run: RunSpec, job: Job, host: Any) -> Done:
    """One run in a worker (see :func:`run_all`); what happened, with the record when one was written."""
    outcome = run_all([run], job, host)
    return Done(outcome, read_record(outcome.records[0]) if outcome.records else None)


@dataclass(frozen=True)
class Done:
    """One run's outcome, as a worker hands it back (pickles)."""

    outcome: SuiteOutcome
    record: dict[str, Any] | None  # None: skipped (finished before, or held by another process)


def merge(total: SuiteOutcome, part: SuiteOutcome) -> None:
    for name in ("ok", "failed", "skipped", "elsewhere", "records"):
        getattr(total, name).extend(getattr(part, name))


def tally(outcome: SuiteOutcome, run_id: str, record: dict[str, Any] | None, path: Path) -> None:
    """Count a run whose record another process (a Slurm task) or this one (a dead worker's) wrote."""
    if record is None:
        outcome.skipped.append(run_id)
        return
    (outcome.ok if record["status"] == "ok" else outcome.failed).append(run_id)
    outcome.records.append(path)
