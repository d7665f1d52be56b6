"""``--executor local``: this process runs the runs one after another (the default)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vlbench.engine import Reporter, SuiteOutcome
from vlbench.executors._common import Job, run_all
from vlbench.types.runs import RunSpec


class LocalExecutor:
    name = "local"

    def describe(self) -> str:
        return "this process"

    def run(self, runs: Sequence[RunSpec], job: Job, host: Any, reporter: Reporter, warn: Callable[[str], Any]) -> SuiteOutcome:
        return run_all(runs, job, host, reporter, warn)
