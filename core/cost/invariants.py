"""What must hold in every cost block, checked on the block as measured and as read back."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from vlbench.cost.flops import FVCORE_TOLERANCE
from vlbench.cost.sizes import FP16_TOLERANCE


def _relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else (0.0 if a == b else math.inf)


def check_cost_invariants(cost: Mapping[str, Any]) -> list[str]:
    """What is wrong with a cost block; empty when it is consistent. Checks only the parts present.

    Params and FLOPs: components sum to the total; FLOPs = 2 x MACs. fp16 size within 5% of
    2 bytes per parameter. Latency percentiles ordered. Throughput never ran a larger batch
    than asked. The vision tower's MACs within 2% of fvcore's where it was counted.
    """
    try:
        return _invariant_problems(cost)
    except (KeyError, TypeError, AttributeError) as exc:  # a record from elsewhere, read back from JSON
        return [f"cost block is malformed ({type(exc).__name__}: {exc})"]


def _invariant_problems(cost: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    params = cost.get("params")
    if params:
        for key in ("trainable", "frozen", "total"):
            parts = sum(part[key] for part in params["components"].values())
            if parts != params["total"][key]:
                problems.append(f"params: {key} components sum to {parts}, total says {params['total'][key]}")
    flops = cost.get("flops")
    if flops:
        for name, part in [*flops["components"].items(), ("total", flops["total"])]:
            if part["flops"] != 2 * part["macs"]:
                problems.append(f"flops: {name} has {part['flops']} FLOPs but {part['macs']} MACs (FLOPs must be 2 x MACs)")
            if "ops" in part and sum(part["ops"].values()) != part["flops"]:
                problems.append(f"flops: {name}'s ops sum to {sum(part['ops'].values())}, not {part['flops']}")
        parts = sum(part["flops"] for part in flops["components"].values())
        if parts != flops["total"]["flops"]:
            problems.append(f"flops: components sum to {parts} FLOPs, total says {flops['total']['flops']}")
    size = cost.get("fp16_size")
    if size and params:
        expected = 2 * params["total"]["total"]
        if _relative(expected, size["bytes"]) >= FP16_TOLERANCE:
            problems.append(
                f"fp16_size: {size['bytes']} bytes vs 2 x {params['total']['total']} params = {expected} (more than 5% apart)"
            )
    timed = [(f"latency.{k}", v) for k, v in cost.get("latency", {}).items() if isinstance(v, dict)]
    timed += [(f"stages.{k}", v) for k, v in cost.get("stages", {}).items() if isinstance(v, dict)]
    timed += [
        (f"throughput.batch{e['requested_batch']}", e) for e in cost.get("throughput", {}).get("batches", []) if e.get("batch")
    ]
    for where, stats in timed:
        if not 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]:
            ms = ", ".join(str(stats[key]) for key in ("p50_ms", "p90_ms", "p99_ms"))
            problems.append(f"{where}: percentiles out of order or not positive ({ms} ms)")
    for entry in cost.get("throughput", {}).get("batches", []):
        if entry["batch"] is not None and entry["batch"] > entry["requested_batch"]:
            problems.append(f"throughput: ran batch {entry['batch']} where {entry['requested_batch']} was asked")
    fvcore = cost.get("checks", {}).get("fvcore_vision", {})
    if fvcore.get("measured") and flops:
        ours = flops["components"]["vision"]["macs"]
        if _relative(ours, fvcore["macs"]) > FVCORE_TOLERANCE:
            problems.append(f"flops: vision {ours} MACs vs fvcore's {fvcore['macs']} (more than 2% apart)")
    return problems
