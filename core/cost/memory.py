"""Peak memory of an inference forward and of a training step."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from vlbench.cost.inputs import (
    inference,
    inference_forward,
    input_shape,
    measured_objective,
    objective_name,
    synthetic_images,
    synthetic_text,
    with_backoff,
)
from vlbench.data import Precision
from vlbench.objectives import ObjectiveSpec, VLModel
from vlbench.training import preserved_state, set_train_mode
from vlbench.types.datasets import Batch


def _held_bytes(track: Sequence[object]) -> int:
    """Bytes of the distinct storages that modules (parameters, gradients, buffers) and
    optimizers (state) hold."""
    tensors: list[torch.Tensor] = []
    for owner in track:
        if isinstance(owner, nn.Module):
            tensors += [t for p in owner.parameters() for t in (p, p.grad) if t is not None]
            tensors += list(owner.buffers())
        elif isinstance(owner, torch.optim.Optimizer):
            tensors += [t for state in owner.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Kineto logs every profiler start and stop to the process's stderr, whatever the log
    level; silence the memory pass only."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_memory(fn: Callable[[], object], device: torch.device, track: Sequence[object] = ()) -> dict[str, Any]:
    """Peak bytes while ``fn`` runs once: ``peak_bytes = baseline_bytes + peak_above_baseline_bytes``.

    CUDA: the caching allocator's ``max_memory_allocated`` after ``reset_peak_memory_stats``;
    the baseline is everything allocated before. Elsewhere: torch.profiler's allocator events
    (``profile_memory``), whose running sum inside ``fn`` gives the peak above the start; the
    baseline is what the modules and optimizers in ``track`` hold.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {
            "measured": True,
            "unit": "bytes",
            "method": "torch.cuda.max_memory_allocated",
            "peak_bytes": peak,
            "baseline_bytes": baseline,
            "peak_above_baseline_bytes": peak - baseline,
        }
    baseline = _held_bytes(track)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
    # Kineto also warns, inside fn, of every block freed that was allocated before the start:
    # expected here, since baseline_bytes accounts for those blocks.
    with _quiet_stderr():
        profiler.__enter__()
        try:
            fn()
        finally:
            profiler.__exit__(None, None, None)
    cpu = torch.autograd.DeviceType.CPU
    recorded = profiler.profiler.kineto_results if profiler.profiler is not None else None
    assert recorded is not None, "the profiler has exited, so its results are set"
    events = sorted(
        (e for e in recorded.events() if e.name() == "[memory]" and e.device_type() == cpu),
        key=lambda e: e.start_ns(),
    )
    if not events:
        return {"measured": False, "reason": "the profiler recorded no allocations"}
    live = np.cumsum([e.nbytes() for e in events])  # type: ignore[attr-defined]  # memory events have nbytes(); torch's stub omits it
    above = max(0, int(live.max()))
    return {
        "measured": True,
        "unit": "bytes",
        "method": "torch.profiler allocator events (profile_memory)",
        "peak_bytes": baseline + above,
        "baseline_bytes": baseline,
        "peak_above_baseline_bytes": above,
        "baseline_of": "parameters, gradients, buffers and optimizer state held before",
    }


def inference_memory(
    model: VLModel,
    precision: Precision,
    batch: int = 32,
    *,
    objective: ObjectiveSpec | str | None = None,
    image_size: Sequence[int] | None = None,
    text_length: int | None = None,
) -> dict[str, Any]:
    """Peak bytes of the objective's inference forward on ``batch`` synthetic images and full
    captions, halved on out-of-memory."""
    objective = measured_objective(model, objective)
    size, length = input_shape(model, image_size, text_length)
    device = precision.device

    def attempt(n: int) -> dict[str, Any]:
        def forward() -> None:
            images = synthetic_images(n, size, device, precision.channels_last)
            text = synthetic_text(model, n, length, device) if length is not None else None
            with inference(precision):
                inference_forward(model, objective, images, text)

        return peak_memory(forward, device, (model,))

    used, result, failed = with_backoff(batch, device, attempt)
    return _after_backoff(result, batch, used, failed, of=f"{objective_name(objective)} forward, synthetic input")


def train_step_memory(
    model: VLModel,
    precision: Precision,
    batch: int = 32,
    *,
    loss_fn: Callable[[VLModel, Batch], torch.Tensor] | None = None,
    train_batch: Batch | None = None,
    objective: ObjectiveSpec | str | None = None,
    image_size: Sequence[int] | None = None,
    text_length: int | None = None,
) -> dict[str, Any]:
    """Peak bytes of two AdamW training steps in the order of the training loop (forward,
    zero_grad, backward, step): the second forward runs while the first step's gradients and
    the optimizer state are held. With the run's frozen towers and autocast.

    With ``loss_fn`` and ``train_batch`` (the task's loss on a real batch) that is what runs;
    otherwise a synthetic loss of the objective on ``batch`` random images and full captions,
    halved on out-of-memory. Weights, buffers, gradients, train/eval modes and the RNG are as
    before when it returns.
    """
    frozen = {name for name, part in model.components().items() if not any(p.requires_grad for p in part.parameters())}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        return {"measured": False, "reason": "every parameter is frozen"}
    if train_batch is not None and loss_fn is None:
        raise ValueError("train_batch needs the loss_fn that goes with it")
    objective = measured_objective(model, objective)
    if objective is None and train_batch is None:
        return {"measured": False, "reason": "no fusion: no objective to train"}
    size, length = input_shape(model, image_size, text_length)
    device = precision.device

    def attempt(n: int) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(trainable, lr=0.0)

        def steps() -> None:
            # Both steps inside the measurement: the CPU profiler only sees frees of what it saw allocated.
            for _ in range(2):
                with precision.autocast():
                    if train_batch is not None:
                        assert loss_fn is not None  # checked on entry
                        loss = loss_fn(model, train_batch)
                    else:
                        assert objective is not None  # checked on entry
                        text = synthetic_text(model, n, length, device) if length is not None else None
                        loss = objective.synthetic_loss(model, synthetic_images(n, size, device, precision.channels_last), text)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        return peak_memory(steps, device, (model,))

    requested = len(train_batch.index) if train_batch is not None else batch
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), preserved_state(model):
        set_train_mode(model, frozen)
        used: int | None
        result: dict[str, Any] | None
        failed: list[int]
        if train_batch is not None:
            used, result, failed = requested, attempt(requested), []
        else:
            used, result, failed = with_backoff(batch, device, attempt)
    loss = "task loss on a training batch" if train_batch is not None else f"synthetic {objective_name(objective)} loss"
    return _after_backoff(result, requested, used, failed, loss=loss, steps=2, optimizer="AdamW")


def _after_backoff(
    result: dict[str, Any] | None, requested: int, used: int | None, failed: list[int], **about: Any
) -> dict[str, Any]:
    """A memory measurement's entry: the peak and the batches it took, or why there is none."""
    if result is None:
        return {"measured": False, "reason": f"out of memory down to batch 1 (tried {failed})"}
    return {**result, "requested_batch": requested, "batch": used, "oom_batches": failed, **about}
