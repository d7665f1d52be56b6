"""A run record's ``cost`` block: every measurement, the hardware, how busy the machine was
meanwhile (:mod:`vlbench.interference`) and what the invariants found."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from vlbench import interference
from vlbench.cost.environment import fingerprint
from vlbench.cost.flops import count_flops, fvcore_macs
from vlbench.cost.inputs import input_shape, measured_objective, synthetic_images
from vlbench.cost.invariants import check_cost_invariants
from vlbench.cost.memory import inference_memory, train_step_memory
from vlbench.cost.sizes import fp16_size, parameter_counts
from vlbench.cost.timing import TIMING_PROTOCOL, latency, run_stages, throughput
from vlbench.data import Precision
from vlbench.objectives import ObjectiveSpec, VLModel
from vlbench.types.datasets import Batch
from vlbench.types.tasks import CostStage


def measure(
    model: VLModel,
    precision: Precision,
    image_size: Sequence[int] | None = None,
    text_length: int | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    budget_s: float = 1.0,
    *,
    objective: ObjectiveSpec | str | None = None,
    loss_fn: Callable[[VLModel, Batch], torch.Tensor] | None = None,
    train_batch: Batch | None = None,
    stages: Mapping[str, CostStage] | None = None,
    compile_mode: str = "none",
    cross_check: bool = True,
    train_memory: bool = True,
    **timing: Any,
) -> dict[str, Any]:
    """A run record's ``cost`` block. ``budget_s`` is the time budget of each timed figure.

    The model must already sit on ``precision.device`` in its memory format, in eval mode.
    ``loss_fn`` with ``train_batch`` makes the training-step memory use the task's loss on a
    real batch; ``stages`` are the task's extra timed stages; ``cross_check`` adds fvcore's
    count of the vision tower's MACs; ``train_memory=False`` skips the training-step memory
    (encoder-only runs: ``{"measured": false, "reason": ...}``). ``problems`` lists what :func:`check_cost_invariants` found;
    ``conditions`` says how busy the machine was meanwhile (:mod:`vlbench.interference`).
    """
    size, length = input_shape(model, image_size, text_length)
    objective = measured_objective(model, objective)
    device = precision.device
    watch = interference.Watch(device)
    cost: dict[str, Any] = {
        "params": parameter_counts(model),
        "flops": count_flops(model, size, length, objective=objective),
        "latency": latency(model, precision, size, length, budget_s, objective=objective, **timing),
        "throughput": {
            "unit": "images/s",
            "of": "vision encoder, synthetic images",
            "protocol": TIMING_PROTOCOL,
            "batches": throughput(model.vision, precision, size, batch_sizes, budget_s, **timing),
        },
    }
    cost["memory"] = {
        "unit": "bytes",
        "inference": inference_memory(
            model, precision, max(batch_sizes), objective=objective, image_size=size, text_length=length
        ),
        "train_step": train_step_memory(
            model,
            precision,
            max(batch_sizes),
            loss_fn=loss_fn,
            train_batch=train_batch,
            objective=objective,
            image_size=size,
            text_length=length,
        )
        if train_memory
        else {"measured": False, "reason": "not measured: encoder-only run (no training)"},
    }
    cost["fp16_size"] = fp16_size(model)
    if stages:
        cost["stages"] = {"unit": "ms", "protocol": TIMING_PROTOCOL, **run_stages(stages, precision, budget_s, **timing)}
    if objective is not None and objective.extra_cost is not None:
        cost[objective.name] = objective.extra_cost(
            model, precision, size, batch_sizes, budget_s, loss_fn=loss_fn, train_batch=train_batch, **timing
        )
    if cross_check:
        cost["checks"] = {"fvcore_vision": fvcore_macs(model.vision, synthetic_images(1, size, device))}
    cost["hardware"] = fingerprint(precision, compile_mode)
    cost["conditions"] = watch.finish(cost)
    cost["problems"] = check_cost_invariants(cost)
    return cost
