"""`vlbench run`: a suite's runs checked, matched against the records already written (done,
stale, to run), executed on the chosen executor with progress, and summed up; ``--dry-run``
shows the plan as a table instead.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, cast

from rich.console import Console
from rich.table import Table
from rich.text import Text

from vlbench import executors, folders, pretrained
from vlbench.errors import StorageError
from vlbench.plugins_command import plugin_host, warn_plugin_problems
from vlbench.run_progress import RichReporter
from vlbench.sanitize import terminal_text

if TYPE_CHECKING:
    from vlbench.executors.slurm import SlurmExecutor
    from vlbench.types.runs import RunSpec

DEFAULT_RESULTS = folders.RESULTS
DEFAULT_RUNS = folders.RUNS
RUNS_ENV = "VLBENCH_RUNS_DIR"  # also the --runs-dir default when set (the tests point it at a temporary folder)


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from vlbench import embedding_cache
    from vlbench.claims import ClaimBoard
    from vlbench.engine import resolve_device
    from vlbench.fingerprint import resume_plan
    from vlbench.preflight import preflight
    from vlbench.suite import load_suite

    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported: it reads the variable once
    shard = executors.parse_shard(args.shard) if args.shard is not None else None
    executor = executors.from_args(args, args.suite)
    host = plugin_host()
    warn_plugin_problems(host, console)
    suite = load_suite(args.suite, host)
    runs = executors.select_shard(suite.runs, *shard) if shard else list(suite.runs)
    of = f" (shard {shard[0]}/{shard[1]} of {_runs(len(suite.runs))})" if shard else ""
    plan = resume_plan(
        runs,
        host,
        args.results_dir,
        args.cache_dir,
        warn=lambda message: console.print(Text(terminal_text(f"warning: {message}")), soft_wrap=True),
    )
    done = {run_id for run_id, entry in plan.items() if entry["status"] == "done"}
    stale = {run_id: entry["reason"] for run_id, entry in plan.items() if entry["status"] == "stale"}
    device = args.device or suite.device
    if not args.dry_run:  # a dry run lists a GPU suite's runs on any machine (a login node)
        resolve_device(device)  # a suite asking for CUDA on a machine without it fails here, not in every run
    job = executors.Job(args.results_dir, args.cache_dir, args.runs_dir, args.profile, device, {"name": executor.name})
    todo = [r for r in runs if r.run_id not in done]
    if args.dry_run:
        running = {run_id: owner.describe() for run_id, owner in ClaimBoard(args.results_dir, suite.name).live().items()}
        console.print(_runs_table(suite.name, tuple(runs), done, running, stale))
        for run_id, reason in stale.items():
            console.print(Text(terminal_text(f"stale {run_id}: {reason}")), soft_wrap=True)
        console.print(
            f"{_runs(len(runs))}{of}, {len(done)} already finished, {len(stale)} stale (would run again); "
            f"results would go to {args.results_dir / suite.name}/"
        )
        if executor.name == "slurm" and todo:
            console.print(f"sbatch script of the job array for the {_runs(len(todo))} to run:", markup=False)
            console.print(cast("SlurmExecutor", executor).sbatch_script(todo, job), markup=False, highlight=False, soft_wrap=True)
        return 0
    if args.no_embedding_cache:
        os.environ["VLBENCH_EMBEDDING_CACHE"] = "off"  # read by the engine, here and in spawned workers
    embedding_cache.preflight(todo, args.cache_dir)
    pretrained.ensure_available(
        todo, host, args.suite, say=lambda message: console.print(Text(terminal_text(message)), soft_wrap=True)
    )
    checked = preflight(todo, host, args.results_dir, args.cache_dir, Path(args.runs_dir) if args.runs_dir else None)
    for line in (*checked.datasets, *checked.notes, *([checked.disk] if checked.disk else [])):
        console.print(Text(terminal_text(f"preflight: {line}")), soft_wrap=True)
    folder = args.results_dir / suite.name
    held = len(list(folder.glob("*.json"))) if folder.is_dir() else 0
    console.print(
        Text(terminal_text(f"results: {folder}/ ({held} record file{'' if held == 1 else 's'} there before)")), soft_wrap=True
    )
    console.print(
        f"suite {suite.name}: {_runs(len(runs))}{of}, {len(done)} finished before, {len(stale)} stale, "
        f"{len(todo)} to run on {executor.describe()}, device {device}",
        markup=False,
    )
    try:
        with RichReporter(console, len(todo)) as reporter:
            outcome = executor.run(
                todo, job, host, reporter, warn=lambda message: console.print(Text(terminal_text(message)), soft_wrap=True)
            )
        if args.cost_retries:
            from vlbench.cost_retry import remeasure_noisy

            remeasure_noisy(
                runs,
                host,
                args.results_dir,
                args.cache_dir,
                resolve_device(device),
                args.cost_retries,
                say=lambda message: console.print(Text(message), soft_wrap=True),
            )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished runs are saved; run the same command again to resume.")
        return 130
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    elsewhere = f", {len(outcome.elsewhere)} left to other processes (claimed)" if outcome.elsewhere else ""
    skipped = len(done) + len(outcome.skipped)  # done never reached the executor; outcome.skipped finished meanwhile
    shown = "" if args.results_dir == DEFAULT_RESULTS else f" {args.results_dir}"
    console.print(
        Text(
            terminal_text(
                f"{len(outcome.ok)} ok, {len(outcome.failed)} failed, {skipped} skipped (finished before){elsewhere}, "
                f"{len(outcome.stale)} re-run as stale (old records in stale/); "
                f"records in {folder}/ (`vlbench leaderboard show{shown}` tables them)"
            )
        ),
        soft_wrap=True,
    )
    return 1 if outcome.failed else 0


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def _vision_weights(run: RunSpec) -> str:
    options = run.require("vision").options
    if options.get("weights"):
        return "file"
    return "pretrained" if options.get("pretrained") else "random-init"


def _runs_table(
    suite: str, runs: tuple[RunSpec, ...], done: set[str], running: dict[str, str], stale: dict[str, str] | None = None
) -> Table:
    """One row per run; a column whose value every run shares moves to the caption, so the
    names that tell runs apart fit in a narrow terminal."""
    kinds = list(dict.fromkeys(kind for run in runs for kind in run.components))
    columns = {kind: [choice.name if (choice := run.choice(kind)) else "-" for run in runs] for kind in kinds}
    if "vision" in columns:
        columns = {
            "vision": columns.pop("vision"),
            "size": ["x".join(map(str, run.require("vision").options["image_size"])) for run in runs],
            "weights": [_vision_weights(run) for run in runs],
            **columns,
        }
    for kind in kinds:  # options that tell runs of one component apart (a prune-ratio sweep)
        chosen = [run.choice(kind) for run in runs]
        keys = sorted({k for c in chosen if c for k in c.options})
        differ = [k for k in keys if len({repr(c.options.get(k)) if c else "-" for c in chosen}) > 1 and k != "image_size"]
        if differ:
            columns[f"{kind} options"] = [" ".join(f"{k}={c.options.get(k)}" for k in differ) if c else "-" for c in chosen]
    columns["seed"] = [str(run.seed) for run in runs]
    shared = {name: values[0] for name, values in columns.items() if len(set(values)) == 1}
    if len(shared) == len(columns):  # nothing tells the runs apart (one run): the vision column stays
        del shared["vision"]
    caption = ", ".join(f"{name} {value}" for name, value in shared.items())
    table = Table(title=f"suite {suite}: {_runs(len(runs))}", caption=f"every run: {caption}" if caption else None)
    varying = [name for name in columns if name not in shared]
    for column in ("#", "run id", *varying, "status"):
        table.add_column(column, overflow="fold", no_wrap=column == "run id")
    for i, run in enumerate(runs):
        status = (
            "done"
            if run.run_id in done
            else f"running ({running[run.run_id]})"
            if run.run_id in running
            else ("stale" if run.run_id in (stale or {}) else "pending")
        )
        table.add_row(str(i + 1), run.run_id, *(columns[name][i] for name in varying), status)
    return table


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="train, select on val, test and record every run of a suite")
    run.add_argument("suite", type=Path, help="suite file, e.g. suites/quickstart.toml")
    run.add_argument("--dry-run", action="store_true", help="print the resolved runs and exit")
    run.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_RESULTS,
        help=f"where records go, <results-dir>/<suite>/<run-id>.json; default: {DEFAULT_RESULTS}, which "
        f"`vlbench leaderboard` reads by default",
    )
    run.add_argument(
        "--cache-dir",
        type=Path,
        default=folders.default_cache_dir(),
        help="generated datasets; default: $VLBENCH_CACHE or ~/.cache/vlbench",
    )
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), help="overrides the suite's device")
    run.add_argument(
        "--runs-dir",
        default=os.environ.get(RUNS_ENV, str(DEFAULT_RUNS)),
        help=f"TensorBoard scalars and profiler traces, <runs-dir>/<suite>/<run_id>/; default: ${RUNS_ENV} or "
        f"./{DEFAULT_RUNS}; '' = off",
    )
    run.add_argument(
        "--profile", action="store_true", help="write torch.profiler traces of a few training and inference steps per run"
    )
    run.add_argument(
        "--cost-retries",
        type=int,
        default=0,
        metavar="N",
        help="at the end of the suite, measure again (up to N times) the cost of runs measured on a busy machine "
        "(docs/cost.md, cost.conditions); default: 0",
    )
    run.add_argument(
        "--offline",
        action="store_true",
        help="never reach a model hub (sets HF_HUB_OFFLINE=1): missing pretrained weights stop the suite with the fetch command instead of downloading",
    )
    run.add_argument(
        "--no-embedding-cache",
        action="store_true",
        help="compute frozen towers in every run instead of reading <cache-dir>/embeddings",
    )
    executors.add_arguments(run)
    run.set_defaults(func=cmd_run)
