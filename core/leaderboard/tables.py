"""The leaderboard as pandas tables: the latest record of each run, failed and missing runs,
ranks, Pareto fronts and "CI overlaps" flags, partitioned into tables.

* a run is a (suite, run id) pair; the run id hashes the resolved config, so the latest
  successful record of a run (by ``finished_at``) is the one shown;
* a run whose latest error record has no later successful record is listed as failed, and a
  run that a suite file declares but no record holds is listed as missing: never dropped;
* tables are partitioned by suite, task (on its dataset) and hardware class
  (``environment.device_name`` + ``environment.precision``): cost measured on different
  hardware is never ranked in one table.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from vlbench import folders
from vlbench.errors import UserError, VlbenchError
from vlbench.leaderboard.records import IDENTITY_COLUMNS, cost_columns, is_missing, read_rows

DEFAULT_SUITES = folders.SUITES


PARTITION = ["suite", "task", "dataset", "hardware"]


# Cost axes of the Pareto fronts and plots: (column, how an axis names it).
COST_AXES = (("params (M)", "params"), ("GMACs", "GMACs"), ("latency p50 (ms)", "latency"))


@dataclass(frozen=True)
class Partition:
    """One table: the runs of one task on one dataset, in one suite, on one hardware class."""

    suite: str
    task: str
    dataset: str
    hardware: str
    rows: pd.DataFrame  # ranked: best main test metric first (cost-only: highest throughput first)
    cost_only: bool = False  # no quality metric: cost columns only, no rank

    @property
    def title(self) -> str:
        if self.cost_only:
            return f"{self.task} (cost only, unranked: fastest first), {self.hardware}"
        return f"{self.task} on {self.dataset}, {self.hardware}"

    @property
    def slug(self) -> str:
        return slug("-".join((self.suite, self.task, self.dataset, self.hardware)), always_hash=True)


@dataclass
class Leaderboard:
    results_dir: Path
    runs: pd.DataFrame  # one row per (suite, run id): its latest successful record
    failed: pd.DataFrame  # latest error record of each run with no later success
    missing: pd.DataFrame  # declared by a suite file, no record at all: suite, run id, model, suite file
    invalid: list[tuple[str, str]]  # (file, what is wrong), skipped
    records: list[dict[str, Any]]  # every valid record; rows point in with "_record"
    costs: pd.DataFrame  # cost-only runs (no quality metric, e.g. task throughput), latest record each; never ranked
    notes: list[str] = field(default_factory=list)  # what could not be checked, and why
    missing_checked: bool = True  # False: no suite file was read, so ``missing`` is empty without meaning "none"

    def partitions(self, suite: str | None = None) -> list[Partition]:
        runs = self.runs if suite is None else self.runs[self.runs["suite"] == suite]
        return [
            Partition(in_suite, task, dataset, hardware, rows=rows)
            for (in_suite, task, dataset, hardware), rows in runs.groupby(PARTITION, sort=True)
        ]

    def cost_partitions(self, suite: str | None = None) -> list[Partition]:
        """Tables of cost-only runs, by suite, task and hardware class; fastest first."""
        runs = self.costs if suite is None else self.costs[self.costs["suite"] == suite]
        return [
            Partition(in_suite, task, dataset, hardware, rows=rows, cost_only=True)
            for (in_suite, task, dataset, hardware), rows in runs.groupby(PARTITION, sort=True)
        ]

    def suites(self) -> list[str]:
        return sorted(set(self.runs["suite"]) | set(self.costs["suite"]) | set(self.failed["suite"]) | set(self.missing["suite"]))

    def record(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return self.records[int(row["_record"])]


def page_path(row: Mapping[str, Any]) -> str:
    """Where a run's provenance page lives, relative to the site root."""
    suffix = "" if row["status"] == "ok" else ".error"
    return f"runs/{slug(row['suite'])}/{slug(row['run id'])}{suffix}.html"


def slug(text: str, always_hash: bool = False) -> str:
    """A file-name-safe form of ``text``; a hash suffix keeps distinct texts distinct."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:60] or "x"
    if safe != text or always_hash:
        safe += "-" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return safe


def load(results_dir: Path, suites: Path | None = None, include_noisy: bool = False, check_missing: bool = True) -> Leaderboard:
    """Read and validate every record under ``results_dir``; ``suites`` (a suite file or a
    folder of them; default ./suites when it exists) declares the runs that should be there.
    ``check_missing=False`` reads the records alone: expanding a suite loads every plugin (and
    torch), which takes seconds, so `leaderboard show` lists missing runs only when asked.

    Runs not above chance never join a Pareto front; nor do runs whose cost was measured on a
    busy machine (``cost.conditions.noisy``) unless ``include_noisy``."""
    results_dir = Path(results_dir)
    found = read_rows(results_dir)
    rows, cost_rows, records, invalid = found.quality, found.cost_only, found.records, found.invalid
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=IDENTITY_COLUMNS)
    frame = _by_finish(frame)
    key = ["suite", "run id"]
    runs = frame[frame["status"] == "ok"].drop_duplicates(key, keep="last")
    errors = frame[frame["status"] == "error"].drop_duplicates(key, keep="last")
    costs = _by_finish(pd.DataFrame(cost_rows, columns=[*IDENTITY_COLUMNS, *cost_columns({})])).drop_duplicates(key, keep="last")
    succeeded = pd.concat([runs[[*key, "_finished"]], costs[[*key, "_finished"]]])
    errors = errors.merge(succeeded, on=key, how="left", suffixes=("", "_ok"))
    failed = errors[errors["_finished_ok"].isna() | (errors["_finished_ok"] < errors["_finished"])].copy()
    failed["note"] = failed["_finished_ok"].notna().map({True: "an older successful record is shown in the tables", False: ""})
    failed = failed.drop(columns="_finished_ok").sort_values(key)
    costs["throughput batch"] = costs["throughput batch"].astype("Int64")
    costs = costs.sort_values(
        [*PARTITION, "throughput (img/s)", "model"], ascending=[*[True] * len(PARTITION), False, True], na_position="last"
    ).reset_index(drop=True)
    declared, notes, checked = _declared_runs(suites, set(frame["suite"]) | set(costs["suite"]), check_missing)
    recorded = pd.concat([frame[key], costs[key]]).drop_duplicates()
    missing = declared.merge(recorded, on=key, how="left", indicator=True)
    missing = missing[missing["_merge"] == "left_only"].drop(columns="_merge")
    runs = _ranked(runs, include_noisy)
    notes += _pareto_notes(runs, include_noisy)
    return Leaderboard(
        results_dir, runs, failed.reset_index(drop=True), missing.reset_index(drop=True), invalid, records, costs, notes, checked
    )


def _pareto_notes(runs: pd.DataFrame, include_noisy: bool) -> list[str]:
    """Why rows are missing from the Pareto fronts."""
    notes: list[str] = []
    if runs.empty:
        return notes
    below = int((~runs["above chance"].astype(bool)).sum())
    if below:
        notes.append(
            f"{plural(below, 'run')} not above chance (95% CI reaches the chance level, or the best baseline): "
            "marked, never Pareto-optimal."
        )
    noisy = int((runs["noisy cost"] != "").sum())
    if noisy and not include_noisy:
        notes.append(
            f"{plural(noisy, 'run')} with cost measured on a busy machine (cost.conditions, docs/cost.md): marked "
            "'noisy cost' and left out of the Pareto fronts; re-measure with `vlbench run SUITE --cost-retries N` "
            "on a quiet machine, or pass --include-noisy to rank them anyway."
        )
    elif noisy:
        notes.append(
            f"{plural(noisy, 'run')} with cost measured on a busy machine are included in the Pareto fronts (--include-noisy)."
        )
    return notes


def _by_finish(frame: pd.DataFrame) -> pd.DataFrame:
    """Oldest record first (by finish time, then file name), so keep="last" keeps the latest."""
    finished = pd.to_datetime(frame["finished at"], utc=True, errors="coerce", format="ISO8601")
    return frame.assign(_finished=finished).sort_values(["_finished", "source"], na_position="first", kind="stable")


def _ranked(runs: pd.DataFrame, include_noisy: bool = False) -> pd.DataFrame:
    """Rank within each partition on the main test metric; mark the Pareto-optimal runs among
    those above chance with trustworthy cost (see :func:`load`)."""
    if runs.empty:
        return runs.assign(**{"#": pd.Series(dtype=int), "Pareto-optimal on": pd.Series(dtype=str)})
    runs = runs.copy()
    runs["throughput batch"] = runs["throughput batch"].astype("Int64")  # a batch size, not a float
    runs["_score"] = runs["main test"].where(runs["higher is better"], -runs["main test"])
    runs["#"] = runs.groupby(PARTITION)["_score"].rank(ascending=False, method="min").astype(int)
    fronts = pd.Series([[] for _ in range(len(runs))], index=runs.index)
    eligible = runs["above chance"].astype(bool) & (include_noisy | (runs["noisy cost"] == ""))
    for _, part in runs[eligible].groupby(PARTITION):
        for column, axis in COST_AXES:
            measured = part[part[column].notna()]
            for index, optimal in zip(
                measured.index, pareto_mask(measured[column].tolist(), measured["_score"].tolist()), strict=True
            ):
                if optimal:
                    fronts[index].append(axis)
    runs["Pareto-optimal on"] = fronts.map(", ".join)
    runs["vs leader"] = _versus_leader(runs)
    return runs.sort_values([*PARTITION, "#", "model"]).reset_index(drop=True)


def _versus_leader(runs: pd.DataFrame) -> pd.Series:
    """Per run: "leader" (rank 1), "CI overlaps" (its 95% interval overlaps the leader's, so the
    ranking between them is not established), "" (clearly behind), "no CI" (either lacks one)."""
    from vlbench.bootstrap import intervals_overlap

    flags = pd.Series("", index=runs.index, dtype=object)
    for _, part in runs.groupby(PARTITION):
        leader = part.sort_values(["#", "model"]).iloc[0]
        lead_ci = (
            None
            if is_missing(leader["CI95 low"]) or is_missing(leader["CI95 high"])
            else [leader["CI95 low"], leader["CI95 high"]]
        )
        for index, row in part.iterrows():
            if row["#"] == 1:
                flags[index] = "leader"
                continue
            ci = None if is_missing(row["CI95 low"]) or is_missing(row["CI95 high"]) else [row["CI95 low"], row["CI95 high"]]
            overlap = intervals_overlap(ci, lead_ci)
            flags[index] = "no CI" if overlap is None else "CI overlaps" if overlap else ""
    return flags


def pareto_mask(cost: Sequence[float], score: Sequence[float]) -> list[bool]:
    """True for the points no other point beats on both axes (lower cost, higher score);
    exact duplicates of a front point are on the front too."""
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -score[i]))
    mask, best, last = [False] * len(cost), -math.inf, None
    for i in order:
        if score[i] > best or (cost[i], score[i]) == last:
            mask[i], best, last = True, score[i], (cost[i], score[i])
    return mask


def _declared_runs(suites: Path | None, recorded: set[str], check: bool) -> tuple[pd.DataFrame, list[str], bool]:
    """Runs the suite files declare, for the suites that have records; notes on the rest; whether
    any suite file was read."""
    declared = pd.DataFrame(columns=["suite", "run id", "model", "suite file"])
    if not check:
        return declared, [], False
    if suites is None and not DEFAULT_SUITES.is_dir():
        return (
            declared,
            [f"Missing runs were not checked: no suite files ({DEFAULT_SUITES}/ does not exist; pass --suites)."],
            False,
        )
    explicit = suites is not None
    suites = suites or DEFAULT_SUITES
    if not suites.exists():
        raise UserError(
            f"{suites}: no such suite file or folder (--suites). Pass a suite .toml or a folder of them, e.g. suites/."
        )
    files = [suites] if suites.is_file() else sorted(suites.glob("*.toml"))
    notes, rows, host = [], [], None
    for path in files:
        try:
            name = tomllib.loads(path.read_text(encoding="utf-8")).get("suite", {}).get("name")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, AttributeError) as exc:
            notes.append(f"{path}: unreadable suite file ({exc}); its missing runs are not listed.")
            continue
        if not isinstance(name, str):
            notes.append(f"{path}: no [suite] name; its missing runs are not listed.")
            continue
        if name not in recorded:
            if explicit:  # the default suites/ folder declares suites a results folder need not hold
                notes.append(f"Suite {name!r} ({path}) has no records yet: every run it declares is missing.")
            continue
        try:
            from vlbench.manager import PluginHost  # imports torch and every plugin: only when a suite needs expanding
            from vlbench.suite import load_suite

            host = host or PluginHost()
            suite = load_suite(path, host)
        except VlbenchError as exc:
            notes.append(f"{path}: could not be expanded, so its missing runs are not listed: {exc}")
            continue
        rows += [{"suite": run.suite, "run id": run.run_id, "model": run.label, "suite file": str(path)} for run in suite.runs]
    return (pd.DataFrame(rows, columns=declared.columns) if rows else declared), notes, True


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
