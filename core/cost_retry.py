"""`vlbench run --cost-retries N`: at the end of a suite, measure again the cost of every run
whose cost block was taken on a busy machine (``cost.conditions.noisy``), up to N times.

The first quiet measurement replaces the record's cost block; when every attempt is noisy the
original block stays. Either way ``cost.retries`` lists each attempt's conditions (noisy or
not, the names of its problems), so a record says how its cost figures were obtained. The
components are built again from the run's config (:func:`vlbench.pipeline.remeasure_cost`):
params, FLOPs, memory and dense models' timings do not depend on the trained weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from vlbench import interference
from vlbench.manager import PluginHost
from vlbench.results import RecordError, read_record, record_path, write_record
from vlbench.types.runs import ResultRecord, RunSpec


def _attempt(cost: dict[str, Any], attempt: int) -> dict[str, Any]:
    conditions = cost.get("conditions", {})
    return {
        "attempt": attempt,
        "noisy": bool(conditions.get("noisy")),
        "problems": interference.describe(cost),
        "latency_model_p50_ms": (cost.get("latency", {}).get("model") or {}).get("p50_ms"),
    }


def remeasure_noisy(
    runs: Sequence[RunSpec],
    host: PluginHost,
    results_dir: Path,
    cache_dir: Path,
    device: torch.device,
    retries: int,
    say: Callable[[str], Any] = print,
    measure: Callable[[RunSpec, PluginHost, Path, torch.device], dict[str, Any]] | None = None,
) -> dict[str, bool]:
    """{run id: quiet now} for every run of ``runs`` whose successful record has a noisy cost
    block; the records are rewritten in place. ``measure`` defaults to the engine's."""
    if measure is None:
        from vlbench.pipeline import remeasure_cost

        measure = remeasure_cost
    outcome: dict[str, bool] = {}
    for run in runs:
        path = record_path(results_dir, run.suite, run.run_id)
        try:
            record = read_record(path)
        except RecordError:
            continue  # no record (interrupted) or an unreadable one: nothing to re-measure
        if record["status"] != "ok" or not interference.is_noisy(record["cost"]):
            continue
        history = list(record["cost"].get("retries") or [_attempt(record["cost"], 0)])
        quiet = None
        for attempt in range(1, retries + 1):
            say(
                f"re-measuring the cost of {run.label} [{run.run_id}] (attempt {attempt} of {retries}): "
                f"it was measured on a busy machine ({interference.describe(record['cost'])})"
            )
            cost = measure(run, host, Path(cache_dir), device)
            history.append(_attempt(cost, len(history)))
            if not interference.is_noisy(cost):
                quiet = cost
                break
        record["cost"] = {**(quiet if quiet is not None else record["cost"]), "retries": history}
        write_record(ResultRecord(**record), results_dir)
        outcome[run.run_id] = quiet is not None
        say(
            f"{run.label} [{run.run_id}]: "
            + (
                "quiet measurement kept"
                if quiet is not None
                else f"still noisy after {retries} attempt(s); the first measurement is kept"
            )
        )
    return outcome
