"""The ``vlbench`` command.

Exit status: 0 all runs succeeded, 1 some runs failed (their error records are written),
2 bad input (nothing was run or written), 130 interrupted (finished runs are kept).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from vlbench import checkplugin, scaffold
from vlbench.errors import UserError
from vlbench.leaderboard import add_leaderboard_parser
from vlbench.types import KINDS, RunSpec

DEFAULT_RESULTS = Path("leaderboard/results")
DEFAULT_RUNS = Path("runs")  # TensorBoard scalars and --profile traces: <runs-dir>/<suite>/<run_id>/


def default_cache_dir() -> Path:
    return Path(os.environ.get("VLBENCH_CACHE", Path.home() / ".cache" / "vlbench"))


class RichReporter:
    """Overall progress over runs and per-run progress over training steps, with ETAs."""

    def __init__(self, console: Console, total_runs: int):
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False,
        )
        self.overall = self.progress.add_task("suite", total=total_runs, info="")
        self.current = None
        self.label = ""

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def run_started(self, run: RunSpec, total_steps: int) -> None:
        self.label = run.label
        if self.current is not None:
            self.progress.remove_task(self.current)
        self.current = self.progress.add_task(f"  {run.label}", total=total_steps, info="")

    def step(self, epoch: int, step: int, loss: float) -> None:
        self.progress.update(self.current, advance=1, info=f"epoch {epoch} loss {loss:.3f}")

    def epoch(self, row: dict[str, float]) -> None:
        val = {k: v for k, v in row.items() if k.startswith("val_")}
        shown = " ".join(f"{k}={v:.2f}" for k, v in val.items())
        self.console.print(f"  {self.label}  epoch {int(row['epoch'])}: train_loss={row['train_loss']:.3f} {shown}")

    def stage(self, text: str) -> None:
        if self.current is not None:
            self.progress.update(self.current, info=text)

    def run_finished(self, record: dict[str, Any]) -> None:
        self.progress.update(self.overall, advance=1)
        if record["status"] == "ok" and record["metrics"].get("quality") is False:
            rates = ", ".join(f"batch {e['requested_batch']}: {e['images_per_s']:.1f} img/s"
                              for e in record["cost"]["throughput"]["batches"] if e.get("images_per_s") is not None)
            self.console.print(f"[green]ok[/green]    {record['label']}  {rates}  [{record['run_id']}]")
        elif record["status"] == "ok":
            test = record["metrics"]["splits"]["test"]
            main = test["main"]
            self.console.print(
                f"[green]ok[/green]    {record['label']}  test {main}={test['values'][main]:.2f} "
                f"(chance {test['chance'][main]:.2f})  [{record['run_id']}]"
            )
        else:
            self.console.print(f"[red]error[/red] {record['label']}: {record['error']['type']}: {record['error']['message']}  [{record['run_id']}]")


def _host():
    from vlbench.manager import PluginHost

    return PluginHost()


def _warn_plugin_problems(host, console: Console) -> None:
    for failure in host.failures:
        console.print(f"[yellow]warning:[/yellow] {failure.describe()}")
    for conflict in host.conflicts():
        console.print(f"[yellow]warning:[/yellow] {conflict.describe()}")


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    from vlbench.engine import resolve_device, run_suite
    from vlbench.results import finished_run_ids
    from vlbench.suite import load_suite

    host = _host()
    _warn_plugin_problems(host, console)
    suite = load_suite(args.suite, host)
    done = finished_run_ids(args.results_dir, suite.name)
    if args.dry_run:
        console.print(_runs_table(suite.name, suite.runs, done))
        console.print(f"{len(suite.runs)} runs, {len(done & {r.run_id for r in suite.runs})} already finished; "
                      f"results would go to {args.results_dir / suite.name}/")
        return 0
    device = resolve_device(args.device or suite.device)
    os.environ["VLBENCH_RUNS_DIR"] = args.runs_dir  # read by the TensorBoard observer; "" turns it off
    todo = [r for r in suite.runs if r.run_id not in done]
    console.print(f"suite {suite.name}: {len(suite.runs)} runs, {len(suite.runs) - len(todo)} finished before, {len(todo)} to run on {device}")
    try:
        with RichReporter(console, len(todo)) as reporter:
            outcome = run_suite(suite.runs, host, args.results_dir, args.cache_dir, device, reporter, warn=console.print,
                                profile_dir=Path(args.runs_dir or DEFAULT_RUNS) if args.profile else None)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/yellow]: finished runs are saved; run the same command again to resume.")
        return 130
    console.print(
        f"{len(outcome.ok)} ok, {len(outcome.failed)} failed, {len(outcome.skipped)} skipped (finished before); "
        f"records in {args.results_dir / suite.name}/"
    )
    return 1 if outcome.failed else 0


def _runs_table(suite: str, runs: tuple[RunSpec, ...], done: set[str]) -> Table:
    """One row per run; a column whose value every run shares moves to the caption, so the
    names that tell runs apart fit in a narrow terminal."""
    columns = {
        "vision": [run.vision.name for run in runs],
        "size": ["x".join(map(str, run.vision.options["image_size"])) for run in runs],
        "text": [run.text.name if run.text else "-" for run in runs],
        "fusion": [run.fusion.name for run in runs],
        "task": [run.task.name for run in runs],
        "dataset": [run.dataset.name if run.dataset else "-" for run in runs],
        "seed": [str(run.seed) for run in runs],
    }
    shared = {name: values[0] for name, values in columns.items() if len(runs) > 1 and len(set(values)) == 1}
    caption = ", ".join(f"{name} {value}" for name, value in shared.items())
    table = Table(title=f"suite {suite}: {len(runs)} runs", caption=f"every run: {caption}" if caption else None)
    varying = [name for name in columns if name not in shared]
    for column in ("#", "run id", *varying, "status"):
        table.add_column(column, overflow="fold", no_wrap=column == "run id")
    for i, run in enumerate(runs):
        status = "done" if run.run_id in done else "pending"
        table.add_row(str(i + 1), run.run_id, *(columns[name][i] for name in varying), status)
    return table


def cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    host = _host()
    table = Table(title="vlbench components")
    for column in ("kind", "name", "plugin", "distribution", "version"):
        table.add_column(column, overflow="fold")
    table.add_column("description", overflow="ellipsis", no_wrap=True, max_width=60)
    for kind in KINDS:
        for name, spec in sorted(host.specs(kind).items()):
            table.add_row(kind, name, spec.plugin, spec.distribution, spec.version, spec.description)
    console.print(table)
    console.print("Open names: vision encoders as timm:<any timm model>, when the timm_any plugin is loaded.")
    if host.failures or host.conflicts():
        _warn_plugin_problems(host, console)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train, select on val, test and record every run of a suite")
    run.add_argument("suite", type=Path, help="suite file, e.g. suites/quickstart.toml")
    run.add_argument("--dry-run", action="store_true", help="print the resolved runs and exit")
    run.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS, help=f"default: {DEFAULT_RESULTS}")
    run.add_argument("--cache-dir", type=Path, default=default_cache_dir(), help="generated datasets; default: $VLBENCH_CACHE or ~/.cache/vlbench")
    run.add_argument("--device", choices=("auto", "cpu", "cuda"), help="overrides the suite's device")
    run.add_argument("--runs-dir", default=str(DEFAULT_RUNS),
                     help=f"TensorBoard scalars and profiler traces, <runs-dir>/<suite>/<run_id>/; default: ./{DEFAULT_RUNS}; '' = off")
    run.add_argument("--profile", action="store_true", help="write torch.profiler traces of a few training and inference steps per run")
    run.set_defaults(func=cmd_run)
    plugins = sub.add_parser("plugins", help="list every component with its kind, plugin, distribution and version")
    plugins.set_defaults(func=cmd_plugins)
    add_leaderboard_parser(sub)
    checkplugin.add_parser(sub)
    scaffold.add_parser(sub)
    return parser


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
