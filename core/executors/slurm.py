"""``--executor slurm``: a Slurm job array through submitit (``pip install 'vlbench[slurm]'``).

One array task per pending run (or per ``runs_per_task`` runs); resources come from the
suite's ``[executor.slurm]`` table, overridden by ``--slurm-*`` flags. submitit writes the
sbatch script, the pickled tasks and each task's stdout/stderr under
``<runs-dir>/<suite>/slurm/``. ``vlbench run`` waits with a progress display, or returns at
once with ``--detach``; running the same command again submits only what has no successful
record (the claims keep a resubmitted run from training twice while the first still runs).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlbench.errors import UserError
from vlbench.executors._common import Job, WorkerDied, run_claimed, tally, worker_host
from vlbench.results import read_record, record_path, to_dict, write_record

if TYPE_CHECKING:  # the engine pulls in torch; `vlbench run --help` reads this module's flags without it
    from vlbench.engine import Reporter, SuiteOutcome
    from vlbench.types.runs import RunSpec

# [executor.slurm] key: (default, help). Generic resources go through submitit's own names
# (timeout_min, gpus_per_node, cpus_per_task, mem_gb), so its local and debug clusters take them too.
SLURM_KEYS: dict[str, tuple[Any, str]] = {
    "partition": ("", "Slurm partition ('' = the cluster's default)"),
    "time_min": (240, "time limit of one array task, minutes"),
    "gpus": (1, "GPUs per task"),
    "cpus": (8, "CPU cores per task"),
    "mem_gb": (32, "memory per task, GB"),
    "runs_per_task": (1, "runs one array task runs, one after another"),
    "array_parallelism": (64, "array tasks Slurm may run at once"),
    "account": ("", "Slurm account ('' = none)"),
    "qos": ("", "quality of service ('' = none)"),
    "setup": ([], "shell lines run before each task, e.g. ['module load cuda']"),
}
CLUSTERS = ("slurm", "local", "debug")  # local/debug: submitit runs the same array on this machine (tests)


def add_arguments(group: argparse._ArgumentGroup) -> None:
    for key in ("partition", "time_min", "gpus", "cpus", "mem_gb", "runs_per_task"):
        default, text = SLURM_KEYS[key]
        group.add_argument(
            f"--slurm-{key.replace('_', '-')}",
            dest=f"slurm_{key}",
            type=type(default),
            help=f"slurm executor: {text}; overrides [executor.slurm] {key} (default {default!r})",
        )
    group.add_argument(
        "--slurm-cluster",
        choices=CLUSTERS,
        default=None,
        help="slurm executor: 'local' or 'debug' run the same job array here through submitit (tests)",
    )
    group.add_argument("--detach", action="store_true", help="slurm executor: submit and return at once")


def slurm_flags_given(args: argparse.Namespace) -> bool:
    return args.detach or args.slurm_cluster is not None or any(getattr(args, f"slurm_{k}", None) is not None for k in SLURM_KEYS)


def suite_table(suite_path: Path) -> dict[str, Any]:
    """The suite's ``[executor.slurm]`` table, checked key by key."""
    data = tomllib.loads(Path(suite_path).read_text(encoding="utf-8")).get("executor", {})
    if not isinstance(data, dict) or set(data) - {"slurm"}:
        raise UserError(
            f"{suite_path}: executor: only an [executor.slurm] table is allowed here, got {sorted(data) if isinstance(data, dict) else data!r}."
        )
    table = data.get("slurm", {})
    if not isinstance(table, dict):
        raise UserError(f"{suite_path}: executor.slurm: expected a table, got {table!r}.")
    for key, value in table.items():
        if key not in SLURM_KEYS:
            raise UserError(f"{suite_path}: executor.slurm.{key}: unknown key. Allowed: {', '.join(SLURM_KEYS)}.")
        default = SLURM_KEYS[key][0]
        bad_type = type(value) is not type(default) or isinstance(value, list) and not all(isinstance(v, str) for v in value)
        if bad_type or isinstance(value, int) and value < (0 if key == "gpus" else 1):
            raise UserError(
                f"{suite_path}: executor.slurm.{key}: expected {'a list of strings' if isinstance(default, list) else type(default).__name__}"
                f"{' >= 1' if isinstance(default, int) and key != 'gpus' else ''}, got {value!r} (default {default!r})."
            )
    return table


@dataclass(frozen=True)
class SlurmExecutor:
    options: dict[str, Any]
    cluster: str  # "slurm", or submitit's "local" / "debug"
    detach: bool
    name: str = "slurm"

    @classmethod
    def from_args(cls, args: argparse.Namespace, suite_path: Path) -> SlurmExecutor:
        try:
            import submitit  # noqa: F401
        except ImportError:
            raise UserError(
                "--executor slurm needs submitit, which is not installed: pip install 'vlbench[slurm]' (or pip install submitit)."
            ) from None
        options = {key: default for key, (default, _) in SLURM_KEYS.items()} | suite_table(suite_path)
        for key in SLURM_KEYS:
            flag = getattr(args, f"slurm_{key}", None)
            if flag is not None:
                if isinstance(flag, int) and flag < (0 if key == "gpus" else 1):
                    raise UserError(f"--slurm-{key.replace('_', '-')} {flag}: must be {'>= 0' if key == 'gpus' else '>= 1'}.")
                options[key] = flag
        return cls(options, args.slurm_cluster or "slurm", args.detach)

    def describe(self) -> str:
        return f"a Slurm job array ({self.cluster}), {self.options['runs_per_task']} run(s) per task"

    def chunks(self, runs: Sequence[RunSpec]) -> list[list[RunSpec]]:
        size = self.options["runs_per_task"]
        return [list(runs[i : i + size]) for i in range(0, len(runs), size)]

    def folder(self, job: Job, suite: str) -> Path:
        return (Path(job.runs_dir or "runs") / suite / "slurm").resolve()

    def _submitit(self, folder: Path) -> Any:
        import submitit

        o = self.options
        executor = submitit.AutoExecutor(folder=folder / "%j", cluster=self.cluster)
        slurm = {f"slurm_{k}": o[k] for k in ("partition", "account", "qos") if o[k]}
        if o["setup"]:
            slurm["slurm_setup"] = list(o["setup"])
        executor.update_parameters(
            name=f"vlbench-{folder.parent.name}",
            timeout_min=o["time_min"],
            gpus_per_node=o["gpus"],
            cpus_per_task=o["cpus"],
            mem_gb=o["mem_gb"],
            slurm_array_parallelism=o["array_parallelism"],
            **slurm,
        )
        return executor

    def sbatch_script(self, runs: Sequence[RunSpec], job: Job) -> str:
        """The array script submitit would hand sbatch for these runs (``--dry-run`` prints it)."""
        from submitit.slurm.slurm import _convert_mem, _make_sbatch_string

        o, folder = self.options, self.folder(job, runs[0].suite) / "%j"
        optional = {k: o[k] for k in ("partition", "account", "qos", "setup") if o[k]}
        command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
        return _make_sbatch_string(
            command=command,
            folder=folder,
            job_name=f"vlbench-{runs[0].suite}",
            time=o["time_min"],
            gpus_per_node=o["gpus"],
            cpus_per_task=o["cpus"],
            mem=_convert_mem(o["mem_gb"]),
            ntasks_per_node=1,
            array_parallelism=o["array_parallelism"],
            map_count=len(self.chunks(runs)),
            **optional,
        )

    def run(self, runs: Sequence[RunSpec], job: Job, host: Any, reporter: Reporter, warn: Callable[[str], Any]) -> SuiteOutcome:
        from vlbench.engine import SuiteOutcome

        outcome = SuiteOutcome()
        if not runs:
            return outcome
        folder = self.folder(job, runs[0].suite)
        chunks = self.chunks(runs)
        submitted = datetime.now(UTC).isoformat(timespec="seconds")
        tasks = self._submitit(folder).map_array(_task, chunks, [job] * len(chunks))
        warn(f"submitted job array {tasks[0].job_id.split('_')[0]}: {len(tasks)} task(s); logs in {folder}/")
        if self.detach:
            warn("detached: run the same command again to see what finished and resubmit what did not.")
            return outcome
        waiting = dict(zip(tasks, chunks, strict=True))
        while waiting:
            for task in [t for t in waiting if t.done()]:
                chunk = waiting.pop(task)
                for run in chunk:
                    record = self._collect(task, run, job, host, submitted)
                    tally(outcome, run.run_id, record, record_path(job.results_dir, run.suite, run.run_id))
                    if record is not None:
                        reporter.run_finished(record)
            time.sleep(0.5 if self.cluster != "slurm" else 10)
        return outcome

    def _collect(self, task: Any, run: RunSpec, job: Job, host: Any, submitted: str) -> dict[str, Any] | None:
        """The record this submission wrote for ``run``; None when the task skipped it (finished
        before, or held by another process); an error record when the task died without one."""
        path = record_path(job.results_dir, run.suite, run.run_id)
        if path.is_file() and (record := read_record(path))["started_at"] >= submitted:
            return record
        failure = task.exception()
        if failure is None:
            return None
        last = str(failure).strip().splitlines()[-1] if str(failure).strip() else type(failure).__name__
        error = WorkerDied(f"Slurm task {task.job_id} ended without this run's record ({last}); see {task.paths.stderr}")
        from vlbench.run_record import error_record

        died = error_record(run, submitted, error, host, {"executor": {"name": self.name, "job_id": str(task.job_id)}})
        write_record(died, job.results_dir)
        return to_dict(died)


def _task(chunk: list[RunSpec], job: Job) -> list[str]:
    """One array task: its runs one after another, each under its claim."""
    import socket

    import submitit

    env = submitit.JobEnvironment()
    job = replace(job, executor={**job.executor, "name": "slurm", "job_id": str(env.job_id), "node": socket.gethostname()})
    return [run.run_id for run in chunk if run_claimed(run, job, worker_host()).record is not None]
