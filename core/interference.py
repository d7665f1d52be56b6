"""Was the machine busy while a cost block was measured?

Timings taken while other work competes for the cores are not the model's cost: on a shared
2-core machine batch-1 latencies came out 20-100x the quiet figure. :class:`Watch` brackets a
measurement and records its conditions in the cost block's ``conditions``:

* the 1-minute load average and the runnable threads of *other* processes (``/proc/stat``
  ``procs_running`` minus this process's own running threads, median of a few samples),
  before and after, beside the host's cores, the usable cores and the threads timed with;
* CPU steal time during the measurement (``/proc/stat``; virtual machines report it);
* the spread of the timed repetitions (p90 / p50 of every timed figure of at least 1 ms);
* a calibration probe (a fixed matrix product, timed like any figure) before and after:
  its drift between the two, and its own spread.

Each figure over its threshold (:data:`THRESHOLDS`, docs/cost.md) adds a named problem to
``conditions.problems``; ``conditions.noisy`` is true when there is any. These are kept apart
from ``cost.problems`` (broken invariants): a noisy block is consistent, just not trustworthy.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where a measurement runs: the leaderboard judges blocks without it
    import torch

# name -> (limit, what exceeding it means); docs/cost.md lists the same.
THRESHOLDS: dict[str, tuple[float, str]] = {
    "load": (0.5, "1-minute load average beyond the measurement's own timing threads, per host core"),
    "runnable": (0.0, "other processes' runnable threads beyond the cores the measurement's threads leave free"),
    "steal": (0.05, "share of CPU time stolen by the hypervisor during the measurement"),
    "spread": (1.5, "worst p90 / p50 over the timed figures of at least 1 ms"),
    "probe_drift": (2.0, "calibration probe's median after / before the measurement (or before / after)"),
    "probe_spread": (1.5, "calibration probe's median / fastest call, before or after"),
}
PROBE_SIZE = 512  # the probe multiplies two PROBE_SIZE x PROBE_SIZE fp32 matrices: about 268 MFLOP (a few ms:
# a sub-millisecond probe drifted 1.3-1.8x on an idle 2-core VM from frequency and cache effects alone)
PROBE_CALLS = 15
SAMPLES = 5  # runnable-thread samples per snapshot, 10 ms apart
SPREAD_MIN_MS = 1.0  # shorter figures are dominated by timer and scheduler jitter


def _proc_stat() -> dict[str, Any]:
    """The aggregate CPU jiffies and procs_running of /proc/stat; {} where there is none."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    out: dict[str, Any] = {}
    for line in lines:
        fields = line.split()
        if fields and fields[0] == "cpu":
            out["jiffies"] = [int(v) for v in fields[1:]]  # user nice system idle iowait irq softirq steal ...
        elif fields and fields[0] == "procs_running":
            out["procs_running"] = int(fields[1])
    return out


def _own_running_threads() -> int:
    """Threads of this process in state R (running or runnable) right now."""
    running = 0
    try:
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat", encoding="ascii") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                continue
            running += state == "R"
    except OSError:
        return 1
    return max(running, 1)  # the thread reading this is running


def snapshot() -> dict[str, Any]:
    """Load average and other processes' runnable threads now (median of :data:`SAMPLES`)."""
    others = []
    for i in range(SAMPLES):
        stat = _proc_stat()
        if "procs_running" in stat:
            others.append(max(0, stat["procs_running"] - _own_running_threads()))
        if i < SAMPLES - 1:
            time.sleep(0.01)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"load_1min": load, "other_runnable": statistics.median(others) if others else None}


def probe(device: torch.device | None = None) -> dict[str, Any]:
    """A fixed matrix product timed :data:`PROBE_CALLS` times: median and fastest call in ms."""
    import torch

    device = device or torch.device("cpu")
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(PROBE_SIZE, PROBE_SIZE, generator=generator).to(device)
    b = torch.randn(PROBE_SIZE, PROBE_SIZE, generator=generator).to(device)
    sync = (lambda: None) if device.type == "cpu" else (lambda: torch.accelerator.synchronize(device))
    times = []
    with torch.inference_mode():
        for i in range(PROBE_CALLS + 2):  # two warm-up calls
            start = time.perf_counter()
            torch.mm(a, b)
            sync()
            if i >= 2:
                times.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": statistics.median(times), "min_ms": min(times), "calls": len(times)}


def _timed(cost: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    timed = [(f"latency.{k}", v) for k, v in (cost.get("latency") or {}).items() if isinstance(v, Mapping)]
    timed += [(f"stages.{k}", v) for k, v in (cost.get("stages") or {}).items() if isinstance(v, Mapping)]
    timed += [
        (f"throughput.batch{e.get('requested_batch')}", e)
        for e in (cost.get("throughput") or {}).get("batches", [])
        if isinstance(e, Mapping) and e.get("batch")
    ]
    return [(where, stats) for where, stats in timed if isinstance(stats.get("p50_ms"), (int, float))]


def repetition_spread(cost: Mapping[str, Any]) -> dict[str, Any]:
    """The worst p90 / p50 over the timed figures of at least :data:`SPREAD_MIN_MS`."""
    ratios = {where: stats["p90_ms"] / stats["p50_ms"] for where, stats in _timed(cost) if stats["p50_ms"] >= SPREAD_MIN_MS}
    if not ratios:
        return {"worst_p90_over_p50": None, "of": None}
    where = max(ratios, key=ratios.__getitem__)
    return {"worst_p90_over_p50": ratios[where], "of": where}


class Watch:
    """Brackets one cost measurement: ``Watch(device)`` before, ``.finish(cost)`` after."""

    def __init__(self, device: torch.device | None = None):
        import torch

        self.device = device or torch.device("cpu")
        self.before = snapshot()
        self.probe_before = probe(self.device)
        self.stat_before = _proc_stat()
        self.started = time.perf_counter()

    def finish(self, cost: Mapping[str, Any]) -> dict[str, Any]:
        """The ``conditions`` block of ``cost`` (whose timed figures give the spread)."""
        import torch

        from vlbench.data import usable_cpu_count

        stat_after = _proc_stat()
        seconds = time.perf_counter() - self.started
        probe_after = probe(self.device)
        after = snapshot()
        steal = None
        if len(self.stat_before.get("jiffies", [])) > 7 and len(stat_after.get("jiffies", [])) > 7:
            delta = [b - a for a, b in zip(self.stat_before["jiffies"], stat_after["jiffies"], strict=False)]
            total = sum(delta[:8])  # guest time is already inside user time
            steal = delta[7] / total if total > 0 else 0.0
        threads = torch.get_num_threads() if self.device.type == "cpu" else 1  # on a GPU: the one host thread launching
        conditions = {
            "host_cores": os.cpu_count(),
            "usable_cores": usable_cpu_count(),
            "timing_threads": threads,
            "before": self.before,
            "after": after,
            "steal_share": steal,
            "seconds": seconds,
            "probe": {
                "what": f"torch.mm of two {PROBE_SIZE}x{PROBE_SIZE} fp32 matrices on {self.device.type}",
                "before": self.probe_before,
                "after": probe_after,
            },
            "spread": repetition_spread(cost),
            "thresholds": {name: limit for name, (limit, _) in THRESHOLDS.items()},
        }
        conditions["problems"] = judge(conditions)
        conditions["noisy"] = bool(conditions["problems"])
        return conditions


def judge(conditions: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Named problems: every figure of ``conditions`` over its threshold."""
    limit = {name: value for name, (value, _) in THRESHOLDS.items()}
    cores = conditions["host_cores"] or 1
    free_for_others = max(0, cores - min(conditions["timing_threads"], conditions["usable_cores"]))
    found = []

    def add(name: str, value: float, message: str) -> None:
        found.append({"name": name, "value": round(value, 3), "limit": limit[name], "message": message})

    for when in ("before", "after"):
        load, others = conditions[when]["load_1min"], conditions[when]["other_runnable"]
        # The load average counts the measurement's own threads too: only what is beyond them is interference.
        beyond = None if load is None else (load - min(conditions["timing_threads"], cores)) / cores
        if beyond is not None and beyond > limit["load"]:
            add(
                "load",
                beyond,
                f"load average {load:.2f} on {cores} cores {when} the measurement, "
                f"{conditions['timing_threads']} of it the timing threads",
            )
        if others is not None and others - free_for_others > limit["runnable"]:
            add(
                "runnable",
                others - free_for_others,
                f"{others:g} runnable threads of other processes {when} the measurement, "
                f"{free_for_others} core(s) free beside the {conditions['timing_threads']} timing thread(s)",
            )
    if conditions["steal_share"] is not None and conditions["steal_share"] > limit["steal"]:
        add("steal", conditions["steal_share"], f"{conditions['steal_share']:.0%} of CPU time stolen by the hypervisor")
    spread = conditions["spread"]["worst_p90_over_p50"]
    if spread is not None and spread > limit["spread"]:
        add("spread", spread, f"{conditions['spread']['of']}: p90 is {spread:.2f}x p50")
    before, after = conditions["probe"]["before"]["median_ms"], conditions["probe"]["after"]["median_ms"]
    drift = max(after / before, before / after)
    if drift > limit["probe_drift"]:
        add("probe_drift", drift, f"calibration probe {before:.2f} ms before, {after:.2f} ms after")
    for when in ("before", "after"):
        stats = conditions["probe"][when]
        if stats["median_ms"] / stats["min_ms"] > limit["probe_spread"]:
            add(
                "probe_spread",
                stats["median_ms"] / stats["min_ms"],
                f"calibration probe {when}: median {stats['median_ms']:.2f} ms, fastest {stats['min_ms']:.2f} ms",
            )
    return found


def is_noisy(cost: Any) -> bool:
    """True when a (possibly foreign) cost block records noisy conditions."""
    conditions = cost.get("conditions") if isinstance(cost, Mapping) else None
    return isinstance(conditions, Mapping) and conditions.get("noisy") is True


def describe(cost: Any) -> str:
    """The names of a noisy block's problems, e.g. "load, spread"; "" when quiet or unmeasured."""
    if not is_noisy(cost):
        return ""
    problems = cost["conditions"].get("problems")
    names = [p.get("name") for p in problems if isinstance(p, Mapping)] if isinstance(problems, list) else []
    return ", ".join(dict.fromkeys(str(n) for n in names if n)) or "noisy"
