"""Reading a results folder: every ``*.json`` validated against the record schema
(:func:`vlbench.results.read_record`), then one table row per record with its identity,
quality and cost columns.

A bad file is reported by name and skipped. The schema guarantees the shape of what is read
here, so a field is only ever absent (most blocks are optional), never of another type.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from vlbench import folders, interference
from vlbench.errors import UserError
from vlbench.results import RecordError, read_record
from vlbench.results import reference as labelled_reference
from vlbench.sanitize import terminal_text

DEFAULT_RESULTS = folders.RESULTS


@dataclass
class Rows:
    """What a results folder holds, as rows (each points into ``records`` with "_record")."""

    records: list[dict[str, Any]]  # every valid record
    invalid: list[tuple[str, str]]  # (file, what is wrong), skipped
    quality: list[dict[str, Any]]  # runs that measure quality, and every error record
    cost_only: list[dict[str, Any]]  # successful runs of tasks that measure no quality


def read_rows(results_dir: Path) -> Rows:
    """Every record under ``results_dir`` (``stale/`` folders left out) as a row."""
    if not results_dir.is_dir():
        raise UserError(
            f"{results_dir}: no such results folder. `vlbench run SUITE` writes one record per run to "
            f"{DEFAULT_RESULTS}/<suite>/<run-id>.json; pass the folder that holds them (default {DEFAULT_RESULTS}; the "
            f"project's committed records are in {folders.PROJECT_RESULTS})."
        )
    found = Rows([], [], [], [])
    # stale/ holds records set aside when their code or data changed (core/fingerprint.py): history, not results.
    for path in sorted(
        p
        for p in results_dir.rglob("*.json")
        if not p.name.startswith(".") and "stale" not in p.relative_to(results_dir).parts[:-1]
    ):
        source = path.relative_to(results_dir).as_posix()
        try:
            record = read_record(path)
        except RecordError as exc:
            found.invalid.append((terminal_text(source), terminal_text(str(exc).removeprefix(f"{path}: "))))
            continue
        row = _identity(record, source, len(found.records))
        found.records.append(record)
        if record["status"] == "ok" and record["metrics"].get("quality") is False:  # cost-only: nothing to rank on
            found.cost_only.append(displayable(row | cost_columns(record["cost"])))
            continue
        if record["status"] == "ok":
            row |= _quality_and_cost(record)
        found.quality.append(displayable(row))
    return found


UNKNOWN = "unknown"


def _dig(data: Any, *keys: str) -> Any:
    """data[k1][k2]...; None where a level is absent (most blocks are optional in the record
    schema) or null (a config names no text encoder)."""
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _number(value: Any) -> float | None:
    """A number as float, None where absent (the schema types every number read here, and
    results.problems refuses NaN and infinities)."""
    return None if value is None else float(value)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


_PREFIX = {"": 1.0, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def _giga(value: Any, unit: Any, base: str) -> float | None:
    """A FLOP or MAC count in giga-units, read with its stated unit: FLOPs are never relabelled
    MACs (the mistake the studies made)."""
    if value is None:
        return None
    prefix = re.fullmatch(rf"([KMGT]?){base}s?", unit)  # the schema allows only these units
    assert prefix is not None, unit
    return value * _PREFIX[prefix.group(1)] / 1e9


def _mb(value: Any) -> float | None:
    """Bytes -> MB, the record's MB (10^6 bytes, as efficiency.py states it)."""
    number = _number(value)
    return None if number is None else number / 1e6


def _throughput(block: Any) -> tuple[float | None, int | None]:
    """The best images/s over the batch sizes that ran, and that batch."""
    ran = [
        (entry["images_per_s"], entry["batch"])
        for entry in _dig(block, "batches") or []
        if entry["batch"] is not None and entry.get("images_per_s") is not None
    ]
    return max(ran, default=(None, None))


def _weights(components: Mapping[str, Any]) -> tuple[str, bool]:
    """("random-init", True), ("vision random-init, text pretrained", True), ("pretrained", False)..."""
    found = {}
    for kind, block in components.items():
        weights = block.get("weights")
        if weights is not None:
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
    "suite",
    "task",
    "dataset",
    "hardware",
    "run id",
    "model",
    "vision",
    "text",
    "fusion",
    "weights",
    "random-init",
    "seed",
    "status",
    "device",
    "device name",
    "precision",
    "torch",
    "git commit",
    "finished at",
    "source",
    "_record",
]


def _identity(record: Mapping[str, Any], source: str, index: int) -> dict[str, Any]:
    components, config, env = record["components"], record["config"], record["environment"]

    def name(kind: str) -> str | None:
        return _text(_dig(components, kind, "name") or _dig(config, kind, "name"))

    weights, random_init = _weights(components)
    return {
        "suite": record["suite"],
        "task": name("task") or UNKNOWN,
        "dataset": name("dataset") or _text(_dig(record, "dataset", "name")) or UNKNOWN,
        "hardware": hardware_class(env),
        "run id": record["run_id"],
        "model": record["label"],
        "vision": name("vision"),
        "text": name("text"),
        "fusion": name("fusion"),
        "weights": weights,
        "random-init": random_init,
        "seed": record["seed"],
        "status": record["status"],
        "device": _text(env.get("device")),
        "device name": _text(env.get("device_name")),
        "precision": _text(env.get("precision")),
        "torch": _text(env.get("torch")),
        "git commit": _text(env.get("git_commit")),
        "finished at": record["finished_at"],
        "source": source,
        "_record": index,
    }


def _quality_and_cost(record: Mapping[str, Any]) -> dict[str, Any]:
    """Quality and cost columns of a successful record. Every cost field is optional (cost
    blocks grow as efficiency.py measures more); what a record lacks stays empty."""
    test = record["metrics"]["splits"]["test"]  # the schema guarantees test.main, its value and a chance level or baseline
    main = test["main"]
    units = test.get("units", {})
    ci = _dig(test, "ci95", main) or [None, None]
    higher = _dig(record, "metrics", "higher_is_better") is not False
    # A chance level where one exists, else the task's best named baseline, labelled.
    ref = labelled_reference(test, main, higher)
    row = {
        "main metric": main,
        "main unit": _text(units.get(main)) or "",
        "higher is better": higher,
        "main test": float(test["values"][main]),
        "CI95 low": _number(ci[0]),
        "CI95 high": _number(ci[1]),
        "chance": _number(ref[1]) if ref else None,
        "reference": ref[0] if ref else None,
        "main val": _number(_dig(record, "metrics", "splits", "val", "values", main)),
        **cost_columns(record["cost"]),
    }
    reference, what = _reference(test, main, higher)
    row["above chance"] = above_reference(row["main test"], row["CI95 low"], row["CI95 high"], reference, higher)
    row["flags"] = "; ".join(
        f
        for f in (
            "" if row["above chance"] else f"not above {what}",
            f"noisy cost ({row['noisy cost']})" if row["noisy cost"] else "",
        )
        if f
    )
    for split in ("train", "val"):  # train: only when the suite asked for it (eval_train_split)
        for metric, value in (_dig(record, "metrics", "splits", split, "values") or {}).items():
            row[with_unit(f"{split} {metric}", units.get(metric))] = _number(value)
    for metric, value in test["values"].items():
        row[with_unit(f"test {metric}", units.get(metric))] = float(value)
    row["best epoch"] = _number(_dig(record, "selection", "best_epoch"))
    row["runtime (s)"] = _number(_dig(record, "training", "wall_s"))
    return row


def cost_columns(cost: Mapping[str, Any]) -> dict[str, Any]:
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
        "latency p50 (ms)": _number(_dig(latency, "p50_ms")),
        "latency p90 (ms)": _number(_dig(latency, "p90_ms")),
        "latency p99 (ms)": _number(_dig(latency, "p99_ms")),
        "vision latency p50 (ms)": _number(_dig(cost, "latency", "vision", "p50_ms")),
        "throughput (img/s)": throughput,
        "throughput batch": batch,
        "inference memory (MB)": _mb(_dig(cost, "memory", "inference", "peak_bytes")),
        "train-step memory (MB)": _mb(_dig(cost, "memory", "train_step", "peak_bytes")),
        "fp16 size (MB)": _mb(_dig(cost, "fp16_size", "bytes")),
        "cost problems": "; ".join(problems or []),
        "noisy cost": interference.describe(cost),
    }


def _reference(test: Mapping[str, Any], main: str, higher: bool) -> tuple[float | None, str]:
    """What a run must beat: the chance level, or where the task has none the best named
    baseline (``baselines: {name: {metric: value}}``)."""
    chance = _number(_dig(test, "chance", main))
    if chance is not None:
        return chance, "chance"
    values = [scores[main] for scores in test.get("baselines", {}).values() if main in scores]
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


def with_unit(name: str, unit: Any) -> str:
    return f"{name} ({unit})" if unit else name


def displayable(row: dict[str, Any]) -> dict[str, Any]:
    """Row cells without control characters: every output (terminal, Markdown, HTML, CSV) shows them."""
    return {k: terminal_text(v) if isinstance(v, str) else v for k, v in row.items()}


def is_missing(value: Any) -> bool:
    if isinstance(value, str):
        return value == ""
    return value is None or bool(pd.isna(value))
