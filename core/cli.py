"""The vlbench command: train, test and measure the cost of encoder combinations; tabulate them.

Every command imports torch (and the engine) only when it runs: ``vlbench --help`` and the
leaderboard start without it (benchmarks/cli_startup.py).

Exit status: 0 all runs succeeded, 1 some runs failed (their error records are written) or a
result could not be saved (the suite stopped), 2 bad input (nothing was run or written),
130 interrupted (finished runs are kept).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from vlbench import checkplugin, executors, folders, pretrained, scaffold
from vlbench.errors import StorageError, UserError
from vlbench.leaderboard.cli import add_leaderboard_parser
from vlbench.results import reference
from vlbench.sanitize import terminal_text

if TYPE_CHECKING:
    from rich.progress import TaskID

    from vlbench.executors.slurm import SlurmExecutor
    from vlbench.types import RunSpec

DEFAULT_RESULTS = folders.RESULTS
DEFAULT_RUNS = folders.RUNS
RUNS_ENV = "VLBENCH_RUNS_DIR"  # also the --runs-dir default when set (the tests point it at a temporary folder)
STEP_LINE_EVERY_S = 30.0  # inside an epoch, a progress line this often: a log shows the run is alive


def default_cache_dir() -> Path:
    return Path(os.environ.get("VLBENCH_CACHE", Path.home() / ".cache" / "vlbench"))


class RichReporter:
    """Overall progress over runs and per-run progress over training steps, with ETAs."""

    def __init__(self, console: Console, total_runs: int):
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.overall = self.progress.add_task("suite", total=total_runs, info="", visible=total_runs > 0)
        self.current: TaskID | None = None  # the progress bar of the run in progress
        self.label = ""
        self.total_steps = 0
        self.steps_done = 0
        self.run_start = self.last_line = 0.0

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def run_started(self, run: RunSpec, total_steps: int) -> None:
        self.label = run.label
        self.current = self.progress.add_task(f"  {run.label}", total=total_steps, info="")
        self.total_steps, self.steps_done = total_steps, 0
        self.run_start = self.last_line = time.monotonic()

    def step(self, epoch: int, step: int, loss: float) -> None:
        assert self.current is not None, "step() comes after run_started()"
        self.progress.update(self.current, advance=1, info=f"epoch {epoch} loss {loss:.3f}")
        self.steps_done += 1
        now = time.monotonic()
        if now - self.last_line >= STEP_LINE_EVERY_S:  # the bar is invisible in a log file or a dumb terminal
            self.last_line = now
            rate = self.steps_done / (now - self.run_start)
            left = (self.total_steps - self.steps_done) / rate if rate > 0 else 0.0
            self._line(
                f"  {self.label}  epoch {epoch}: step {self.steps_done}/{self.total_steps}, {rate:.2f} steps/s, "
                f"loss {loss:.3f}, ETA {int(left) // 60}:{int(left) % 60:02d} for the training"
            )

    def epoch(self, row: dict[str, float]) -> None:
        val = {k: v for k, v in row.items() if k.startswith("val_")}
        shown = " ".join(f"{k}={v:.2f}" for k, v in val.items())
        self._line(f"  {self.label}  epoch {int(row['epoch'])}: train_loss={row['train_loss']:.3f} {shown}")

    def stage(self, text: str) -> None:
        if self.current is not None:
            self.progress.update(self.current, info=text)

    def run_finished(self, record: dict[str, Any]) -> None:
        if self.current is not None:  # None when the run failed before it started training
            self.progress.remove_task(self.current)
            self.current = None
        self.progress.update(self.overall, advance=1)
        if record["status"] == "ok" and record["metrics"].get("quality") is False:
            rates = ", ".join(
                f"batch {e['requested_batch']}: {e['images_per_s']:.1f} img/s"
                for e in record["cost"]["throughput"]["batches"]
                if e.get("images_per_s") is not None
            )
            self._line(f"{record['label']}  {rates}  [{record['run_id']}]", status="ok")
        elif record["status"] == "ok":
            test = record["metrics"]["splits"]["test"]
            main = test["main"]
            against = reference(test, main, record["metrics"].get("higher_is_better") is not False)
            beside = f" ({against[0]} {against[1]:.2f})" if against else ""  # no chance level or baseline: none shown
            self._line(
                f"{record['label']}  test {main}={test['values'][main]:.2f}{beside}  [{record['run_id']}]",
                status="ok",
            )
        else:
            error = record["error"]
            self._line(f"{record['label']}: {error['type']}: {error['message']}  [{record['run_id']}]", status="error")

    def _line(self, text: str, status: str | None = None) -> None:
        """One line of plain text (run ids and error messages hold brackets rich would read as
        markup), never hard-wrapped, so it stays one line in a log file."""
        line = Text(terminal_text(text))
        if status is not None:
            line = Text.assemble((f"{status:<6}", "green" if status == "ok" else "red"), line)
        self.console.print(line, soft_wrap=True)


def _host():
    from vlbench.manager import PluginHost

    return PluginHost()


def _warn_plugin_problems(host, console: Console) -> None:
    for failure in host.failures:
        console.print(f"[yellow]warning:[/yellow] {escape(failure.describe())}")
    for conflict in host.conflicts():
        console.print(f"[yellow]warning:[/yellow] {escape(conflict.describe())}")


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
    host = _host()
    _warn_plugin_problems(host, console)
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


def cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    """One line per component (name, plugin, distribution version), its description indented
    below: readable at 80 columns and greppable when piped."""
    host = _host()
    for kind in host.kinds:
        specs = sorted(host.specs(kind).items())
        console.print(f"[bold]{kind}[/bold] ({len(specs)})")
        if not specs:
            continue
        name_width = max(len(name) for name, _ in specs)
        plugin_width = max(len(spec.plugin) for _, spec in specs)
        for name, spec in specs:
            console.print(
                f"  {name:<{name_width}}  {spec.plugin:<{plugin_width}}  {spec.distribution} {spec.version}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            if spec.description:
                console.print(
                    textwrap.indent(textwrap.fill(spec.description, width=max(console.width - 6, 40)), "      "),
                    markup=False,
                    highlight=False,
                    style="dim",
                )
    objectives = ", ".join(f"{name} ({spec.plugin})" for name, spec in host.objectives.items())
    console.print(f"Objectives (what fusions serve and tasks need): {objectives}", markup=False, highlight=False, soft_wrap=True)
    console.print("Open names: vision encoders as timm:<any timm model>, when the timm_any plugin is loaded.")
    if host.failures or host.conflicts():
        _warn_plugin_problems(host, console)
        return 1
    return 0


def cmd_cache(args: argparse.Namespace, console: Console) -> int:
    from vlbench.embedding_cache import report_store

    return report_store(args.cache_dir, args.action, console)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="{run,plugins,leaderboard,check-plugin,new-plugin}", required=True)
    run = sub.add_parser("run", help="train, select on val, test and record every run of a suite")
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
        default=default_cache_dir(),
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
    plugins = sub.add_parser("plugins", help="list every component with its kind, plugin, distribution and version")
    plugins.set_defaults(func=cmd_plugins)
    cache = sub.add_parser("cache", help="the embedding cache of frozen towers: info | clear")
    cache.add_argument("action", choices=("info", "clear"))
    cache.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="default: $VLBENCH_CACHE or ~/.cache/vlbench")
    cache.set_defaults(func=cmd_cache)
    pretrained.add_parser(sub)
    add_leaderboard_parser(sub)
    checkplugin.add_parser(sub)
    scaffold.add_parser(sub)
    _plain_descriptions(parser)
    return parser


def _plain_descriptions(parser: argparse.ArgumentParser) -> None:
    """Descriptions taken from docstrings lose their reStructuredText (``x``, :func:`x`) for --help."""
    if parser.description:
        parser.description = re.sub(r":\w+:`([^`]*)`|``([^`]*)``", lambda m: m.group(1) or m.group(2), parser.description)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _plain_descriptions(child)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return args.func(args, console)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
