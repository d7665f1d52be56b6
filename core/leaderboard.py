"""Leaderboard: result records -> pandas tables -> LEADERBOARD.md, leaderboard.csv, a static site.

The rules, in one place:

* every ``*.json`` under the results folder is validated with the record schema
  (:func:`vlbench.results.read_record`); a bad file is reported by name and skipped;
* a run is a (suite, run id) pair; the run id hashes the resolved config, so the latest
  successful record of a run (by ``finished_at``) is the one shown;
* a run whose latest error record has no later successful record is listed as failed, and a
  run that a suite file declares but no record holds is listed as missing: never dropped;
* tables are partitioned by suite, task (on its dataset) and hardware class
  (``environment.device_name`` + ``environment.precision``): cost measured on different
  hardware is never ranked in one table.

The site itself (HTML, JavaScript, plots) is :mod:`vlbench.leaderboard_site`.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import math
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.text import Text

from vlbench import folders, interference
from vlbench.errors import UserError, VlbenchError
from vlbench.results import RecordError, read_record
from vlbench.results import reference as labelled_reference
from vlbench.sanitize import csv_cell, terminal_text

DEFAULT_RESULTS = folders.RESULTS
DEFAULT_OUT = folders.LEADERBOARD_OUT
DEFAULT_SUITES = folders.SUITES
# Lists the files a build wrote, so a rebuild deletes only its own stale files. Not *.json:
# an output folder may hold the results folder, and every *.json there is read as a record.
MANIFEST = ".vlbench-leaderboard-files"
UNKNOWN = "unknown"
PARTITION = ["suite", "task", "dataset", "hardware"]
# Cost axes of the Pareto fronts and plots: (column, how an axis names it).
COST_AXES = (("params (M)", "params"), ("GMACs", "GMACs"), ("latency p50 (ms)", "latency"))


# ---------------------------------------------------------------- reading records


def _dig(data: Any, *keys: str) -> Any:
    """data[k1][k2]...; None where a level is missing or not an object (the schema checks
    only the top level, so anything deeper may be absent or of another type)."""
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _number(value: Any) -> float | None:
    """A finite number, or None for anything else (absent, null, text, NaN)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


_PREFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def _giga(value: Any, unit: Any, base: str) -> float | None:
    """A FLOP or MAC count in giga-units, read with its stated unit. Anything but ``base`` with
    an SI prefix is refused: FLOPs are never relabelled MACs (the mistake the studies made)."""
    number = _number(value)
    match = re.fullmatch(rf"([KMGT]?){base}s?", str(unit))
    return None if number is None or match is None else number * _PREFIX[match.group(1)] / 1e9


def _mb(value: Any) -> float | None:
    """Bytes -> MB, the record's MB (10^6 bytes, as efficiency.py states it)."""
    number = _number(value)
    return None if number is None else number / 1e6


def _throughput(block: Any) -> tuple[float | None, int | None]:
    """The best images/s over the batch sizes that ran, and that batch."""
    batches = _dig(block, "batches")
    ran = [
        (speed, entry["batch"]) for entry in (batches if isinstance(batches, list) else [])
        if isinstance(entry, Mapping) and isinstance(entry.get("batch"), int) and (speed := _number(entry.get("images_per_s"))) is not None
    ]
    return max(ran, default=(None, None))


def _weights(components: Mapping[str, Any]) -> tuple[str, bool]:
    """("random-init", True), ("vision random-init, text pretrained", True), ("pretrained", False)..."""
    found = {}
    for kind, block in components.items():
        weights = _dig(block, "weights")
        if isinstance(weights, str):
            found[kind] = "from file" if weights.startswith("file:") else weights
    if not found:
        return UNKNOWN, False
    random_init = "random-init" in found.values()
    if len(set(found.values())) == 1:
        return next(iter(found.values())), random_init
    return ", ".join(f"{kind} {weights}" for kind, weights in found.items()), random_init


def hardware_class(environment: Mapping[str, Any]) -> str:
    """The key that cost figures are compared within: device name + precision."""
    name, precision = environment.get("device_name"), environment.get("precision")
    if not name and not precision:
        return UNKNOWN
    return f"{name or 'unknown device'} ({precision or 'unknown precision'})"


IDENTITY_COLUMNS = [
    "suite", "task", "dataset", "hardware", "run id", "model", "vision", "text", "fusion", "weights", "random-init", "seed",
    "status", "device", "device name", "precision", "torch", "git commit", "finished at", "source", "_record",
]


def _identity(record: Mapping[str, Any], source: str, index: int) -> dict[str, Any]:
    components, config, env = record["components"], record["config"], record["environment"]

    def name(kind: str) -> str | None:
        return _text(_dig(components, kind, "name") or _dig(config, kind, "name"))

    weights, random_init = _weights(components)
    return {
        "suite": record["suite"], "task": name("task") or UNKNOWN,
        "dataset": name("dataset") or _text(_dig(record, "dataset", "name")) or UNKNOWN,
        "hardware": hardware_class(env), "run id": record["run_id"], "model": record["label"],
        "vision": name("vision"), "text": name("text"), "fusion": name("fusion"),
        "weights": weights, "random-init": random_init, "seed": record["seed"], "status": record["status"],
        "device": _text(env.get("device")), "device name": _text(env.get("device_name")),
        "precision": _text(env.get("precision")), "torch": _text(env.get("torch")),
        "git commit": _text(env.get("git_commit")), "finished at": record["finished_at"],
        "source": source, "_record": index,
    }


def _quality_and_cost(record: Mapping[str, Any]) -> dict[str, Any]:
    """Quality and cost columns of a successful record. Every cost field is optional (cost
    blocks grow as efficiency.py measures more); what a record lacks stays empty."""
    test = record["metrics"]["splits"]["test"]  # the schema guarantees test.main, its value and a chance level or baseline
    main = test["main"]
    units = test.get("units") if isinstance(test.get("units"), Mapping) else {}
    ci = _dig(test, "ci95", main)
    ci = ci if isinstance(ci, list) and len(ci) == 2 and all(_number(v) is not None for v in ci) else [None, None]
    higher = _dig(record, "metrics", "higher_is_better") is not False
    # A chance level where one exists, else the task's best named baseline, labelled.
    ref = labelled_reference(test, main, higher)
    row = {
        "main metric": main, "main unit": _text(units.get(main)) or "",
        "higher is better": higher,
        "main test": float(test["values"][main]), "CI95 low": _number(ci[0]), "CI95 high": _number(ci[1]),
        "chance": _number(ref[1]) if ref else None, "reference": ref[0] if ref else None,
        "main val": _number(_dig(record, "metrics", "splits", "val", "values", main)),
        **_cost(record["cost"]),
    }
    reference, what = _reference(test, main, higher)
    row["above chance"] = above_reference(row["main test"], row["CI95 low"], row["CI95 high"], reference, higher)
    row["flags"] = "; ".join(f for f in (
        "" if row["above chance"] else f"not above {what}",
        f"noisy cost ({row['noisy cost']})" if row["noisy cost"] else "",
    ) if f)
    for split in ("train", "val"):  # train: only when the suite asked for it (eval_train_split)
        values = _dig(record, "metrics", "splits", split, "values")
        for metric, value in values.items() if isinstance(values, Mapping) else ():
            row[_with_unit(f"{split} {metric}", units.get(metric))] = _number(value)
    for metric, value in test["values"].items():
        row[_with_unit(f"test {metric}", units.get(metric))] = float(value)
    row["best epoch"] = _number(_dig(record, "selection", "best_epoch"))
    row["runtime (s)"] = _number(_dig(record, "training", "wall_s"))
    return row


def _cost(cost: Mapping[str, Any]) -> dict[str, Any]:
    """The cost columns (COST_COLUMNS) of a record's cost block."""
    flops, latency = cost.get("flops"), _dig(cost, "latency", "model")  # "model": the whole forward at batch 1
    unit_macs, unit_flops = _dig(flops, "unit_macs"), _dig(flops, "unit_flops")
    throughput, batch = _throughput(cost.get("throughput"))
    problems = cost.get("problems")
    return {
        "params (M)": _scaled(_number(_dig(cost, "params", "total", "total")), 1e-6),
        "trainable params (M)": _scaled(_number(_dig(cost, "params", "total", "trainable")), 1e-6),
        "vision params (M)": _scaled(_number(_dig(cost, "params", "components", "vision", "total")), 1e-6),
        "text params (M)": _scaled(_number(_dig(cost, "params", "components", "text", "total")), 1e-6),
        "GMACs": _giga(_dig(flops, "total", "macs"), unit_macs, "MAC"),
        "vision GMACs": _giga(_dig(flops, "components", "vision", "macs"), unit_macs, "MAC"),
        "text GMACs": _giga(_dig(flops, "components", "text", "macs"), unit_macs, "MAC"),
        "GFLOPs": _giga(_dig(flops, "total", "flops"), unit_flops, "FLOP"),
        "latency p50 (ms)": _number(_dig(latency, "p50_ms")), "latency p90 (ms)": _number(_dig(latency, "p90_ms")),
        "latency p99 (ms)": _number(_dig(latency, "p99_ms")),
        "vision latency p50 (ms)": _number(_dig(cost, "latency", "vision", "p50_ms")),
        "throughput (img/s)": throughput, "throughput batch": batch,
        "inference memory (MB)": _mb(_dig(cost, "memory", "inference", "peak_bytes")),
        "train-step memory (MB)": _mb(_dig(cost, "memory", "train_step", "peak_bytes")),
        "fp16 size (MB)": _mb(_dig(cost, "fp16_size", "bytes")),
        "cost problems": "; ".join(map(str, problems)) if isinstance(problems, list) else "",
        "noisy cost": interference.describe(cost),
    }


def _reference(test: Mapping[str, Any], main: str, higher: bool) -> tuple[float | None, str]:
    """What a run must beat: the chance level, or where the task has none the best named
    baseline (``baselines: {name: {metric: value}}``)."""
    chance = _number(_dig(test, "chance", main))
    if chance is not None:
        return chance, "chance"
    baselines = test.get("baselines")
    values = [_number(_dig(b, main) if isinstance(b, Mapping) else b) for b in baselines.values()] if isinstance(baselines, Mapping) else []
    values = [v for v in values if v is not None]
    if not values:
        return None, "chance"
    return (max(values) if higher else min(values)), "the best baseline"


def above_reference(value: float, low: float | None, high: float | None, reference: float | None, higher: bool) -> bool:
    """True when the run is better than ``reference`` (chance or the best baseline) beyond its
    95% CI; without a CI, when the point estimate is. No reference: nothing to be below."""
    if reference is None:
        return True
    if higher:
        return (low if low is not None else value) > reference
    return (high if high is not None else value) < reference


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else value * factor


def _with_unit(name: str, unit: Any) -> str:
    return f"{name} ({unit})" if unit else name


# ---------------------------------------------------------------- the leaderboard


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

    def partitions(self, suite: str | None = None) -> list[Partition]:
        runs = self.runs if suite is None else self.runs[self.runs["suite"] == suite]
        return [Partition(*key, rows=rows) for key, rows in runs.groupby(PARTITION, sort=True)]

    def cost_partitions(self, suite: str | None = None) -> list[Partition]:
        """Tables of cost-only runs, by suite, task and hardware class; fastest first."""
        runs = self.costs if suite is None else self.costs[self.costs["suite"] == suite]
        return [Partition(*key, rows=rows, cost_only=True) for key, rows in runs.groupby(PARTITION, sort=True)]

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


def load(results_dir: Path, suites: Path | None = None, include_noisy: bool = False) -> Leaderboard:
    """Read and validate every record under ``results_dir``; ``suites`` (a suite file or a
    folder of them; default ./suites when it exists) declares the runs that should be there.

    Runs not above chance never join a Pareto front; nor do runs whose cost was measured on a
    busy machine (``cost.conditions.noisy``) unless ``include_noisy``."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(
            f"{results_dir}: no such results folder. `vlbench run SUITE` writes one record per run to "
            f"{DEFAULT_RESULTS}/<suite>/<run-id>.json; pass the folder that holds them (default {DEFAULT_RESULTS}; the "
            f"project's committed records are in {folders.PROJECT_RESULTS})."
        )
    records, invalid, rows, cost_rows = [], [], [], []
    for path in sorted(p for p in results_dir.rglob("*.json") if not p.name.startswith(".")):
        source = path.relative_to(results_dir).as_posix()
        try:
            record = read_record(path)
        except RecordError as exc:
            invalid.append((terminal_text(source), terminal_text(str(exc).removeprefix(f"{path}: "))))
            continue
        row = _identity(record, source, len(records))
        records.append(record)
        if record["status"] == "ok" and record["metrics"].get("quality") is False:  # cost-only: nothing to rank on
            cost_rows.append(_displayable(row | _cost(record["cost"])))
            continue
        if record["status"] == "ok":
            row |= _quality_and_cost(record)
        rows.append(_displayable(row))
    frame = pd.DataFrame(rows) if rows else pd.DataFrame(columns=IDENTITY_COLUMNS)
    frame = _by_finish(frame)
    key = ["suite", "run id"]
    runs = frame[frame["status"] == "ok"].drop_duplicates(key, keep="last")
    errors = frame[frame["status"] == "error"].drop_duplicates(key, keep="last")
    costs = _by_finish(pd.DataFrame(cost_rows, columns=[*IDENTITY_COLUMNS, *_cost({})])).drop_duplicates(key, keep="last")
    succeeded = pd.concat([runs[[*key, "_finished"]], costs[[*key, "_finished"]]])
    errors = errors.merge(succeeded, on=key, how="left", suffixes=("", "_ok"))
    failed = errors[errors["_finished_ok"].isna() | (errors["_finished_ok"] < errors["_finished"])].copy()
    failed["note"] = failed["_finished_ok"].notna().map({True: "an older successful record is shown in the tables", False: ""})
    failed = failed.drop(columns="_finished_ok").sort_values(key)
    costs["throughput batch"] = costs["throughput batch"].astype("Int64")
    costs = costs.sort_values([*PARTITION, "throughput (img/s)", "model"], ascending=[*[True] * len(PARTITION), False, True],
                              na_position="last").reset_index(drop=True)
    declared, notes = _declared_runs(suites, set(frame["suite"]) | set(costs["suite"]))
    recorded = pd.concat([frame[key], costs[key]]).drop_duplicates()
    missing = declared.merge(recorded, on=key, how="left", indicator=True)
    missing = missing[missing["_merge"] == "left_only"].drop(columns="_merge")
    runs = _ranked(runs, include_noisy)
    notes += _pareto_notes(runs, include_noisy)
    return Leaderboard(results_dir, runs, failed.reset_index(drop=True), missing.reset_index(drop=True), invalid, records,
                       costs, notes)


def _pareto_notes(runs: pd.DataFrame, include_noisy: bool) -> list[str]:
    """Why rows are missing from the Pareto fronts."""
    notes = []
    if runs.empty:
        return notes
    below = int((~runs["above chance"].astype(bool)).sum())
    if below:
        notes.append(f"{plural(below, 'run')} not above chance (95% CI reaches the chance level, or the best baseline): "
                     "marked, never Pareto-optimal.")
    noisy = int((runs["noisy cost"] != "").sum())
    if noisy and not include_noisy:
        notes.append(f"{plural(noisy, 'run')} with cost measured on a busy machine (cost.conditions, docs/cost.md): marked "
                     "'noisy cost' and left out of the Pareto fronts; re-measure with `vlbench run SUITE --cost-retries N` "
                     "on a quiet machine, or pass --include-noisy to rank them anyway.")
    elif noisy:
        notes.append(f"{plural(noisy, 'run')} with cost measured on a busy machine are included in the Pareto fronts (--include-noisy).")
    return notes


def _displayable(row: dict[str, Any]) -> dict[str, Any]:
    """Row cells without control characters: every output (terminal, Markdown, HTML, CSV) shows them."""
    return {k: terminal_text(v) if isinstance(v, str) else v for k, v in row.items()}


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
            for index, optimal in zip(measured.index, pareto_mask(measured[column].tolist(), measured["_score"].tolist()), strict=True):
                if optimal:
                    fronts[index].append(axis)
    runs["Pareto-optimal on"] = fronts.map(", ".join)
    return runs.sort_values([*PARTITION, "#", "model"]).reset_index(drop=True)


def pareto_mask(cost: Sequence[float], score: Sequence[float]) -> list[bool]:
    """True for the points no other point beats on both axes (lower cost, higher score);
    exact duplicates of a front point are on the front too."""
    order = sorted(range(len(cost)), key=lambda i: (cost[i], -score[i]))
    mask, best, last = [False] * len(cost), -math.inf, None
    for i in order:
        if score[i] > best or (cost[i], score[i]) == last:
            mask[i], best, last = True, score[i], (cost[i], score[i])
    return mask


def _declared_runs(suites: Path | None, recorded: set[str]) -> tuple[pd.DataFrame, list[str]]:
    """Runs the suite files declare, for the suites that have records; and notes on the rest."""
    declared = pd.DataFrame(columns=["suite", "run id", "model", "suite file"])
    if suites is None and not DEFAULT_SUITES.is_dir():
        return declared, [f"Missing runs were not checked: no suite files ({DEFAULT_SUITES}/ does not exist; pass --suites)."]
    explicit = suites is not None
    suites = suites or DEFAULT_SUITES
    if not suites.exists():
        raise UserError(f"{suites}: no such suite file or folder (--suites). Pass a suite .toml or a folder of them, e.g. suites/.")
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
    return (pd.DataFrame(rows, columns=declared.columns) if rows else declared), notes


# ---------------------------------------------------------------- names


def _facets(record: Mapping[str, Any]) -> dict[str, str]:
    """What a run is made of: each component's name and options, and the seed, as text."""
    facets: dict[str, str] = {}
    components = record.get("components") if isinstance(record.get("components"), Mapping) else {}
    for kind, block in components.items():
        if not isinstance(block, Mapping):
            continue
        facets[str(kind)] = str(block.get("name"))
        options = block.get("options") if isinstance(block.get("options"), Mapping) else {}
        for key, value in options.items():
            facets[f"{kind}.{key}"] = f"{key}={json.dumps(value, sort_keys=True, default=str)}".replace('"', "")
    facets["seed"] = f"seed {record.get('seed')}"
    return facets


def distinguishing_names(records: Sequence[Mapping[str, Any]]) -> tuple[list[str], str]:
    """Each run named by what tells it apart from the others (component names, options, seed:
    "resnet18 early embed_dim=128"), and the component names they all share, for a caption."""
    facets = [_facets(r) for r in records]
    keys = list(dict.fromkeys(k for f in facets for k in f))
    def varies(key: str) -> bool:
        if "." not in key:
            return len({f.get(key) for f in facets}) > 1
        kind = key.split(".")[0]  # an option counts between runs of the same component only
        return any(len({f.get(key) for f in facets if f.get(kind) == name}) > 1 for name in {f.get(kind) for f in facets})

    varying = [k for k in keys if varies(k)]
    if not varying:  # one run, or identical configs: the vision encoder names it
        varying = [k for k in keys if "." not in k][:1]
    kinds = {k for k in varying if "." not in k}
    names = [" ".join(f.get(k) or f"no {k}" for k in varying if "." not in k or f.get(k)) for f in facets]
    shared = " ".join(facets[0][k] for k in keys if "." not in k and k not in kinds and k != "seed" and k in facets[0])
    return [terminal_text(name) for name in names], terminal_text(shared)  # record text: no control characters




@dataclass(frozen=True)
class Column:
    key: str  # column of Leaderboard.runs; "CI95" reads "CI95 low" and "CI95 high"
    header: str  # units explicit
    digits: int | None = None  # decimals of a number; None: a text column

    def cell(self, row: Mapping[str, Any]) -> tuple[str, float | None]:
        """(the text shown, the number to sort on: None for text and for empty cells)."""
        if self.key == "CI95":
            low, high = row["CI95 low"], row["CI95 high"]
            if _missing(low) or _missing(high):
                return "—", None
            return f"[{low:.{self.digits}f}, {high:.{self.digits}f}]", float(low)
        value = row.get(self.key)
        if _missing(value):
            return "—", None
        if self.digits is None:
            return str(value), None
        return f"{value:,.{self.digits}f}", float(value)


def _missing(value: Any) -> bool:
    if isinstance(value, str):
        return value == ""
    return value is None or bool(pd.isna(value))


# The record's cost fields as columns: (column = header, decimals; None for text).
COST_COLUMNS = [
    Column(key, key, digits) for key, digits in (
        ("params (M)", 2), ("trainable params (M)", 2), ("vision params (M)", 2), ("text params (M)", 2),
        ("GMACs", 2), ("vision GMACs", 2), ("text GMACs", 2), ("GFLOPs", 2),
        ("latency p50 (ms)", 2), ("latency p90 (ms)", 2), ("latency p99 (ms)", 2), ("vision latency p50 (ms)", 2),
        ("throughput (img/s)", 0), ("throughput batch", 0),
        ("inference memory (MB)", 1), ("train-step memory (MB)", 1), ("fp16 size (MB)", 1), ("cost problems", None), ("noisy cost", None),
    )
]
COMPACT_COST = {"params (M)", "GMACs", "latency p50 (ms)", "throughput (img/s)"}


def table_columns(part: Partition, detailed: bool) -> list[Column]:
    """The columns of one table; cost columns no run of the partition measured are left out."""
    measured_cost = [c for c in COST_COLUMNS if not part.rows[c.key].map(_missing).all()]
    if part.cost_only:  # unranked: no quality, so no rank and no Pareto front
        compact = COMPACT_COST | {"throughput batch", "fp16 size (MB)", "noisy cost"}
        columns = [Column("model", "model"), Column("weights", "weights")]
        columns += [c for c in measured_cost if detailed or c.key in compact] + [Column("seed", "seed")]
        return columns + ([Column("git commit", "git commit"), Column("finished at", "finished at (UTC)")] if detailed else [])
    first = part.rows.iloc[0]
    main, unit = first["main metric"], first["main unit"]
    columns = [Column("#", "#", 0), Column("model", "model")]
    if detailed:
        columns += [Column("vision", "vision"), Column("text", "text"), Column("fusion", "fusion")]
    columns += [
        Column("weights", "weights"), Column("main test", _with_unit(f"{main} test", unit), 2),
        Column("CI95", _with_unit("95% CI", unit), 2),
    ]
    if (part.rows["reference"].fillna("chance") == "chance").all():
        columns.append(Column("chance", _with_unit("chance", unit), 2))
    else:  # no chance level for this metric: the baseline's value and which baseline it is
        columns += [Column("chance", _with_unit("baseline", unit), 2), Column("reference", "baseline is")]
    if detailed:
        columns.append(Column("main val", _with_unit(f"{main} val", unit), 2))
        for split in ("train", "val", "test"):  # every other metric of every split scored
            main_key = _with_unit(f"{split} {main}", unit) if split != "train" else None
            columns += [Column(c, c, 2) for c in part.rows.columns
                        if c.startswith(f"{split} ") and c != main_key and part.rows[c].notna().any()]
        columns += [Column(c, c, 0 if c == "best epoch" else 1) for c in ("best epoch", "runtime (s)") if part.rows[c].notna().any()]
    columns += [c for c in measured_cost if detailed or c.key in COMPACT_COST]
    columns += [Column("Pareto-optimal on", "Pareto-optimal on")]
    if part.rows["flags"].ne("").any():
        columns.append(Column("flags", "flags"))
    columns.append(Column("seed", "seed"))
    if detailed:
        columns += [Column("git commit", "git commit"), Column("finished at", "finished at (UTC)")]
    return columns


# ---------------------------------------------------------------- files


def _md(value: Any) -> str:
    """Text for a Markdown table cell: HTML-escaped (GitHub renders inline HTML) and with
    Markdown punctuation escaped, so a name can neither inject markup nor break the table."""
    escaped = html.escape(" ".join(str(value).split()), quote=False)
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", escaped)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in headers) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    return lines + ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]


def write_markdown(board: Leaderboard, path: Path, plots: Mapping[str, str]) -> Path:
    lines = ["# vlbench leaderboard", "", summary(board), "", RULES, "", "Every column is explained in docs/leaderboard.md.", ""]
    for suite in board.suites():
        lines += [f"## Suite {_md(suite)}", ""]
        for part in board.partitions(suite) + board.cost_partitions(suite):
            columns = table_columns(part, detailed=False)
            cells = [[c.cell(row)[0] for c in columns] for row in _rows(part.rows)]
            numeric = [c.digits is not None for c in columns]
            lines += [f"### {_md(part.title)}", "", *_md_table([c.header for c in columns], cells, numeric), ""]
            if part.slug in plots:
                lines += [f"![{_md(part.rows.iloc[0]['main metric'])} against cost: {_md(part.title)}]({plots[part.slug]})", ""]
    for problems in problem_tables(board):
        lines += [f"## {problems.title}", ""]
        lines += _md_table(problems.headers, problems.rows, [False] * len(problems.headers)) if problems.rows else ["None."]
        lines.append("")
    lines += [f"- {_md(note)}" for note in board.notes]
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path


RULES = (
    "Rows are ranked on the task's main test metric (selected on val, never on test); CI is the "
    "bootstrap 95% interval; chance is what a random scorer gets. Each table holds one task on one "
    "dataset on one hardware class (device name + precision): cost figures are never compared across "
    "hardware. Runs marked random-init were trained from random weights."
)


def summary(board: Leaderboard) -> str:
    latest = board.runs["finished at"].max() if not board.runs.empty else None
    counts = [
        plural(len(board.runs), "successful run") + " in " + plural(board.runs["suite"].nunique(), "suite"),
        plural(len(board.costs), "cost-only run"),
        f"{len(board.failed)} failed", f"{len(board.missing)} missing", plural(len(board.invalid), "invalid record file") + " skipped",
    ]
    return ", ".join(counts) + (f"; newest record finished {latest}." if latest else ".")


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


@dataclass(frozen=True)
class ProblemTable:
    title: str
    headers: list[str]
    rows: list[list[str]]
    pages: list[str | None]  # each row's provenance page, where it has one


def problem_tables(board: Leaderboard, suite: str | None = None) -> list[ProblemTable]:
    """Failed runs, missing runs and (for the whole board) invalid files, as text."""
    failed = _rows(board.failed if suite is None else board.failed[board.failed["suite"] == suite])
    missing = _rows(board.missing if suite is None else board.missing[board.missing["suite"] == suite])
    tables = [
        ProblemTable(
            "Failed runs", ["suite", "model", "run id", "error", "finished at (UTC)", "note"],
            [[r["suite"], r["model"], r["run id"], error_line(board.record(r)), r["finished at"], r["note"]] for r in failed],
            [page_path(r) for r in failed],
        ),
        ProblemTable(
            "Missing runs", ["suite", "model", "run id", "declared in"],
            [[r["suite"], r["model"], r["run id"], r["suite file"]] for r in missing], [None] * len(missing),
        ),
    ]
    if suite is None:
        invalid = [list(item) for item in board.invalid]
        tables.append(ProblemTable("Invalid record files (skipped)", ["file", "problem"], invalid, [None] * len(invalid)))
    return tables


def error_line(record: Mapping[str, Any], limit: int | None = 200) -> str:
    """The error on one line, cut at ``limit`` characters (None: whole)."""
    error = record.get("error") or {}
    line = terminal_text(f"{error.get('type', 'Error')}: {' '.join(str(error.get('message', '')).split())}")
    return line if limit is None or len(line) <= limit else line[: limit - 1] + "…"


def _rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict("records")


def write_tables(board: Leaderboard, out: Path) -> list[Path]:
    """leaderboard.csv, and leaderboard.parquet when pandas has a parquet engine installed."""
    columns = [*PARTITION, "#", *(c for c in board.runs.columns if c not in PARTITION and c != "#" and not c.startswith("_"))]
    public = board.runs[columns]
    written = [out / "leaderboard.csv"]
    public.map(csv_cell).to_csv(written[0], index=False)  # no cell a spreadsheet would run as a formula
    if not board.costs.empty:
        written.append(out / "leaderboard_costs.csv")
        board.costs[[c for c in board.costs.columns if not c.startswith("_")]].map(csv_cell).to_csv(written[-1], index=False)
    try:
        public.to_parquet(out / "leaderboard.parquet", index=False)
        written.append(out / "leaderboard.parquet")
    except ImportError:
        pass  # pyarrow is optional (docs/leaderboard.md): no engine, no parquet file, nothing to report
    return written


@dataclass(frozen=True)
class BuildResult:
    board: Leaderboard
    out: Path
    files: list[Path]


def build(results_dir: Path, out: Path, suites: Path | None = None, include_noisy: bool = False) -> BuildResult:
    """Write LEADERBOARD.md, leaderboard.csv (+ parquet) and the static site into ``out``."""
    board = load(results_dir, suites, include_noisy)
    from vlbench import leaderboard_site  # matplotlib is slow to import; `show` needs none of it

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        plots = leaderboard_site.write_plots(board, out)
        files = [out / p for p in plots.values()]
        files += write_tables(board, out)
        files.append(write_markdown(board, out / "LEADERBOARD.md", plots))
        files += leaderboard_site.write_pages(board, out, plots)
        _replace_manifest(out, files)
    except OSError as exc:
        raise UserError(f"cannot write the leaderboard to {out}: {exc}. Choose a writable output folder (--out).") from None
    return BuildResult(board, out, files)


def publish(results_dir: Path, out: Path, suites: Path | None = None, include_noisy: bool = False) -> BuildResult:
    """The site as a self-contained folder for any static host; ``out`` must be empty, new,
    or a folder published before (its stale files are removed)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise UserError(
            f"{out} exists and is not an empty folder or an earlier `vlbench leaderboard publish` output; refusing to "
            "write into it. Pass a new or empty folder to --out."
        )
    result = build(results_dir, out, suites, include_noisy)
    marker = out / ".nojekyll"  # GitHub Pages: serve the folder as it is
    marker.touch()
    _replace_manifest(out, [*result.files, marker])
    return result


def _replace_manifest(out: Path, files: Sequence[Path]) -> None:
    """Delete what the previous build wrote and this one did not, then record this build's files."""
    manifest = out / MANIFEST
    now = {f.relative_to(out).as_posix() for f in files}
    before = set(manifest.read_text(encoding="utf-8").split("\n")) - {""} if manifest.is_file() else set()
    for name in sorted(before - now):
        stale = out / name
        if ".." not in Path(name).parts and not Path(name).is_absolute() and stale.is_file():
            stale.unlink()
            for parent in stale.parents:
                if parent == out or any(parent.iterdir()):
                    break
                parent.rmdir()
    manifest.write_text("\n".join(sorted(now)) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- CLI


def _report(result: BuildResult, console: Console, default: bool) -> None:
    from vlbench.leaderboard_terminal import report_source

    board = result.board
    report_source(console, board, default)
    for source, problem in board.invalid:
        console.print(Text(f"skipped {board.results_dir / source}: {problem}", style="yellow"))
    for note in board.notes:
        console.print(Text(f"note: {note}"))
    console.print(Text(summary(board)))
    pages = sum(1 for f in result.files if f.suffix == ".html")
    console.print(Text(f"wrote {len(result.files)} files to {result.out}/ ({pages} pages); open {result.out / 'index.html'}"))


def _results_dir(args: argparse.Namespace) -> tuple[Path, bool]:
    """The folder to read, and whether it is the default one."""
    return (args.results_dir, False) if args.results_dir is not None else (DEFAULT_RESULTS, True)


def cmd_build(args: argparse.Namespace, console: Console) -> int:
    results, default = _results_dir(args)
    _report(build(results, args.out, args.suites, args.include_noisy), console, default)
    return 0


def cmd_publish(args: argparse.Namespace, console: Console) -> int:
    results, default = _results_dir(args)
    _report(publish(results, args.out, args.suites, args.include_noisy), console, default)
    return 0


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    from vlbench.leaderboard_terminal import report_source, show

    results, default = _results_dir(args)
    board = load(results, args.suites, args.include_noisy)
    report_source(console, board, default)
    show(board, console, wide=args.wide, columns=args.columns.split(",") if args.columns else None)
    return 0


def add_leaderboard_parser(subparsers: Any) -> None:
    """Add ``vlbench leaderboard build|publish|show`` to the CLI's subparsers."""
    parser = subparsers.add_parser("leaderboard", help="tables, plots and a static site from the result records")
    sub = parser.add_subparsers(dest="leaderboard_command", metavar="{build,publish,show}", required=True)

    def command(name: str, purpose: str, func: Callable[[argparse.Namespace, Console], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=purpose)
        p.add_argument("results_dir", nargs="?", type=Path, default=None,
                       help=f"folder of records; default: {DEFAULT_RESULTS} (where `vlbench run` writes); "
                            f"the project's committed records: {folders.PROJECT_RESULTS}")
        p.add_argument("--include-noisy", action="store_true",
                       help="let runs whose cost was measured on a busy machine into the Pareto fronts")
        p.add_argument("--suites", type=Path,
                       help=f"suite file or folder declaring the runs, to list missing ones; default: {DEFAULT_SUITES}/ if it exists")
        p.set_defaults(func=func)
        return p

    command("build", "write LEADERBOARD.md, leaderboard.csv and the static site", cmd_build).add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output folder; default: {DEFAULT_OUT}"
    )
    command("publish", "write the static site as a self-contained folder for any static host", cmd_publish).add_argument(
        "--out", type=Path, required=True, help="a new or empty folder (or an earlier publish output)"
    )
    show = command("show", "print the leaderboard tables in the terminal", cmd_show)
    show.add_argument("--wide", action="store_true", help="every column, folded to fit, instead of what fits the terminal")
    show.add_argument("--columns", help="comma-separated columns to show, by key or header, e.g. 'model,main test,GMACs'")
