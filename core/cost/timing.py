"""Latency and throughput under timm's benchmark protocol, and the timed stages a task declares."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from vlbench.cost.inputs import (
    inference,
    inference_forward,
    input_shape,
    measured_objective,
    synthetic_images,
    synthetic_text,
    with_backoff,
)
from vlbench.data import Precision
from vlbench.objectives import ObjectiveSpec, VLModel
from vlbench.types.tasks import CostStage

TIMING_PROTOCOL = (
    "timm's benchmark protocol: synthetic inputs, torch.inference_mode, the run's autocast dtype and "
    "memory format; warm-up of at least `warmup_iterations` calls and 20% of the budget; then each "
    "call timed with time.perf_counter, the device synchronised after it, until at least the minimum "
    "number of calls and the rest of the budget are spent (`iterations`); percentiles by linear interpolation"
)
_WARMUP_SHARE = 0.2


def _synchronizer(device: torch.device | None) -> Callable[[], None]:
    if device is None or device.type == "cpu":
        return lambda: None
    return lambda: torch.accelerator.synchronize(device)


def time_stage(
    fn: Callable[[], object],
    budget_s: float = 1.0,
    *,
    device: torch.device | None = None,
    warmup: int = 2,
    min_iters: int = 3,
    max_iters: int = 100_000,
) -> dict[str, Any]:
    """Per-call latency of ``fn`` in ms: p50 / p90 / p99 over as many calls as ``budget_s`` allows.

    Warm-up takes at least ``warmup`` calls and 20% of the budget; then calls are timed one
    by one (the device synchronised after each) until both ``min_iters`` calls and the rest
    of the budget are spent, or ``max_iters``. The caller sets inference mode and autocast.
    """
    sync = _synchronizer(device)
    warm_until = time.perf_counter() + _WARMUP_SHARE * budget_s
    warmed = 0
    while warmed < warmup or (time.perf_counter() < warm_until and warmed < max_iters):
        fn()
        sync()
        warmed += 1
    times: list[float] = []
    until = time.perf_counter() + (1 - _WARMUP_SHARE) * budget_s
    while len(times) < min_iters or (time.perf_counter() < until and len(times) < max_iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(ms.mean()),
        "min_ms": float(ms.min()),
        "iterations": len(times),
        "warmup_iterations": warmed,
        "budget_s": budget_s,
    }


def throughput(
    encoder: nn.Module,
    precision: Precision,
    image_size: Sequence[int],
    batch_sizes: Sequence[int] = (1, 32),
    budget_s: float = 1.0,
    **timing: Any,
) -> list[dict[str, Any]]:
    """Images/s of a vision encoder on synthetic images, one entry per requested batch size.

    A batch that does not fit is halved until it does (``batch`` is what ran, ``oom_batches``
    what did not). ``images_per_s`` is timm's figure (batch x iterations / total time);
    ``images_per_s_p50`` uses the median call. ``timing`` goes to :func:`time_stage`.
    """
    device = precision.device

    def attempt(batch: int) -> dict[str, Any]:
        images = synthetic_images(batch, tuple(image_size), device, precision.channels_last)
        with inference(precision):
            return time_stage(lambda: encoder(images), budget_s, device=device, **timing)

    entries = []
    for requested in batch_sizes:
        batch, stats, failed = with_backoff(requested, device, attempt)
        entry: dict[str, Any] = {"requested_batch": requested, "batch": batch, "oom_batches": failed}
        if stats is not None and batch is not None:  # both None together: every batch ran out of memory
            entry |= {"images_per_s": batch * 1e3 / stats["mean_ms"], "images_per_s_p50": batch * 1e3 / stats["p50_ms"], **stats}
        entries.append(entry)
    return entries


def latency(
    model: VLModel,
    precision: Precision,
    image_size: Sequence[int] | None = None,
    text_length: int | None = None,
    budget_s: float = 1.0,
    *,
    objective: ObjectiveSpec | str | None = None,
    **timing: Any,
) -> dict[str, Any]:
    """Batch-1 latency of each tower alone (encoder-only) and of the objective's whole forward."""
    size, length = input_shape(model, image_size, text_length)
    objective = measured_objective(model, objective)
    device = precision.device
    images = synthetic_images(1, size, device, precision.channels_last)
    text = synthetic_text(model, 1, length, device) if length is not None else None
    out: dict[str, Any] = {"unit": "ms", "batch": 1, "protocol": TIMING_PROTOCOL}
    with inference(precision):
        out["vision"] = time_stage(lambda: model.vision(images), budget_s, device=device, **timing)
        if text is not None:
            out["text"] = time_stage(lambda: model.text(text), budget_s, device=device, **timing)
        out["model"] = time_stage(lambda: inference_forward(model, objective, images, text), budget_s, device=device, **timing)
    return out


# ---------------------------------------------------------------- task-declared stages


def run_stages(stages: Mapping[str, CostStage], precision: Precision, budget_s: float = 1.0, **timing: Any) -> dict[str, Any]:
    """Time every declared stage under inference mode and the run's autocast."""
    out: dict[str, Any] = {}
    with inference(precision):
        for name, stage in stages.items():
            stats = time_stage(stage.fn, budget_s, device=precision.device, **timing)
            out[name] = {
                "items": stage.items,
                "unit": stage.unit,
                "group": stage.group,
                "items_per_s": stage.items * 1e3 / stats["mean_ms"],
                **stats,
            }
    for name, stage in stages.items():
        if stage.group is None or stage.items == 1:
            continue
        single = next((other for other, s in stages.items() if s.group == stage.group and s.items == 1), None)
        if single is not None:
            out[name]["single_stage"] = single
            out[name]["batched_over_n_single"] = out[name]["p50_ms"] / (stage.items * out[single]["p50_ms"])
    return out
