"""A vlbench process the crash tests kill on purpose: ``python reliability_driver.py SUITE
RESULTS CACHE LOG [STAGE RUN_INDEX]`` runs the suite like ``vlbench run`` (preflight, then
run_suite) and SIGKILLs itself when run number RUN_INDEX reaches STAGE:

``building``, ``validating``, ``testing``, ``measuring cost`` (the engine's stages),
``writing`` (inside the record write, before the atomic rename) and ``observing`` (record
written, observers not yet called). LOG gets one line per event: ``started <run_id>`` when a
run starts training and ``observed <run_id>`` when the observer sees its record.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import torch

from vlbench import hookimpl, results
from vlbench.engine import SilentReporter, run_suite
from vlbench.manager import PluginHost
from vlbench.preflight import preflight
from vlbench.suite import load_suite


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


class Log:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, line: str) -> None:
        with open(self.path, "a") as f:
            f.write(line + "\n")

    @hookimpl
    def vlbench_run_finished(self, record):
        self.write(f"observed {record['run_id']}")


class KillingReporter(SilentReporter):
    def __init__(self, log: Log, stage: str | None, run_index: int) -> None:
        self.log, self.kill_stage, self.kill_run, self.runs = log, stage, run_index, -1

    def stage(self, text: str) -> None:
        if text == "building":
            self.runs += 1
        if self.runs == self.kill_run and text == self.kill_stage:
            die()

    def run_started(self, run, total_steps: int) -> None:
        self.log.write(f"started {run.run_id}")

    def run_finished(self, record) -> None:
        if self.runs == self.kill_run and self.kill_stage == "observing":
            die()


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    suite_path, results_dir, cache_dir, log_path = (Path(a) for a in argv[:4])
    stage = argv[4] if len(argv) > 4 else None
    run_index = int(argv[5]) if len(argv) > 5 else 0
    log = Log(log_path)
    host = PluginHost([("log", log)])
    suite = load_suite(suite_path, host)
    preflight(suite.runs, host, results_dir, cache_dir, None)
    reporter = KillingReporter(log, stage, run_index)
    if stage == "writing":
        real_replace = os.replace

        def replace_then_die(src, dst):
            if str(src).endswith(".tmp") and Path(src).parent.name != ".claims" and reporter.runs == run_index:
                die()
            return real_replace(src, dst)

        results.os.replace = replace_then_die  # results.write_record's rename
    outcome = run_suite(suite.runs, host, results_dir, cache_dir, torch.device("cpu"), reporter, warn=log.write)
    print(
        f"{len(outcome.ok)} ok, {len(outcome.failed)} failed, {len(outcome.skipped)} skipped, {len(outcome.elsewhere)} elsewhere"
    )
    return 0 if not outcome.failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
