"""The terminal side of `vlbench run`: a progress bar over the suite's runs and one over the
current run's training steps, with ETAs, and one plain line per finished run (and per epoch, and
every so often inside an epoch, so a log file shows the run is alive)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from vlbench.results import reference
from vlbench.sanitize import terminal_text

if TYPE_CHECKING:
    from rich.progress import TaskID

    from vlbench.types.runs import RunSpec

STEP_LINE_EVERY_S = 30.0  # inside an epoch, a progress line this often: a log shows the run is alive


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
