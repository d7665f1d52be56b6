"""``--executor local``: this process runs the runs one after another (the default)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vlbench.engine import Reporter, SuiteOutcome
from vlbench.executors._common import Job, run_claimed, tally
from vlbench.results import record_path
from vlbench.types import RunSpec


class LocalExecutor:
    name = "local"

    def describe(self) -> str:
        return "this process"

    def run(self, runs: Sequence[RunSpec], job: Job, host: Any, reporter: Reporter, warn: Callable[[str], Any]) -> SuiteOutcome:
        outcome = SuiteOutcome()
        for run in runs:
            record = run_claimed(run, job, host, reporter, warn)
            tally(outcome, run, record, record_path(job.results_dir, run.suite, run.run_id))
        return outcome
