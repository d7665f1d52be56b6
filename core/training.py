"""The generic training loop: AdamW with encoder and head groups, linear warm-up then cosine,
AMP, gradient clipping, selection on the val split, early stopping.

The loop knows nothing about tasks beyond ``task.loss(model, batch)`` and a ``validate``
callback that returns the val :class:`Metrics`; the checkpoint with the best val main metric
is restored at the end. The test split is never seen here.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from vlbench.data import Precision
from vlbench.errors import NonFiniteLossError
from vlbench.objectives import VLModel
from vlbench.types.datasets import Batch
from vlbench.types.metrics import Metrics


@dataclass
class TrainResult:
    best_epoch: int  # 1-based epoch whose weights were kept
    best_value: float  # val main metric at that epoch
    steps: int
    wall_s: float
    stopped_early: bool
    curve: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    first_loss: float = math.nan  # loss of the first step (contrastive: about ln B)


def param_groups(model: VLModel, frozen: set[str], train: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Encoders at encoder_lr / encoder_weight_decay, new modules at lr / weight_decay;
    biases and norm weights (1-D) without weight decay."""
    groups = []
    for part, module in model.components().items():
        if part in frozen:
            continue
        encoder = part in ("vision", "text")
        lr = train["encoder_lr"] if encoder else train["lr"]
        wd = train["encoder_weight_decay"] if encoder else train["weight_decay"]
        params = [p for p in module.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups += [
            {"params": decay, "lr": lr, "weight_decay": wd, "name": f"{part}"},
            {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{part}/no_decay"},
        ]
    return [g for g in groups if g["params"]]


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = int(total_steps * warmup_fraction)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@contextlib.contextmanager
def preserved_state(model: nn.Module) -> Iterator[None]:
    """Weights, buffers and train/eval modes as they were on entry, gradients cleared, when the
    block ends (raised or not): for measurements that train (memory of a training step,
    profiler traces) on the model a run has just trained and scored."""
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    modes = {module: module.training for module in model.modules()}
    try:
        yield
    finally:
        model.zero_grad(set_to_none=True)
        model.load_state_dict(state)
        for module, training in modes.items():
            module.training = training


def set_train_mode(model: VLModel, frozen: set[str]) -> None:
    model.train()
    for part in frozen:  # frozen towers keep eval-mode dropout and norm statistics
        model.components()[part].eval()


def fit(
    model: VLModel,
    loss_fn: Callable[[VLModel, Batch], torch.Tensor],
    epoch_batches: Callable[[int], Iterator[Batch]],
    steps_per_epoch: int,
    validate: Callable[[], Metrics],
    train: Mapping[str, Any],
    precision: Precision,
    frozen: set[str],
    on_step: Callable[[int, int, float], None] = lambda epoch, step, loss: None,
    on_epoch: Callable[[dict[str, float]], None] = lambda row: None,
    higher_is_better: bool = True,
) -> TrainResult:
    groups = param_groups(model, frozen, train)
    # The fused kernel exists on CPU too (torch >= 2.4): 11 ms against 37 ms for the default
    # for-loop on the quickstart's 8.4M parameters, with the same updates.
    optimizer = torch.optim.AdamW(groups, fused=True)
    total = train["epochs"] * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(total, train["warmup_fraction"]))
    scaler = torch.amp.GradScaler(precision.device.type, enabled=precision.dtype == torch.float16)
    trainable = [p for g in groups for p in g["params"]]

    sign = 1.0 if higher_is_better else -1.0
    result = TrainResult(best_epoch=0, best_value=-sign * math.inf, steps=0, wall_s=0.0, stopped_early=False)
    best_state: dict[str, torch.Tensor] | None = None
    start = time.perf_counter()
    for epoch in range(1, train["epochs"] + 1):
        set_train_mode(model, frozen)
        epoch_start, losses = time.perf_counter(), []
        for batch in epoch_batches(epoch):
            with precision.autocast():
                loss = loss_fn(model, batch)
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"loss became {loss.item()} at epoch {epoch}, step {result.steps + 1}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            if train["grad_clip"] > 0:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(trainable, train["grad_clip"])
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            result.steps += 1
            losses.append(loss.item())
            if result.steps == 1:
                result.first_loss = losses[0]
            on_step(epoch, len(losses), losses[-1])
        model.eval()
        metrics = validate()
        value = metrics.values[metrics.main]
        row: dict[str, float] = {
            "epoch": epoch,
            "train_loss": sum(losses) / max(1, len(losses)),
            f"val_{metrics.main}": value,
            "lr": float(scheduler.get_last_lr()[0]),
            "epoch_s": time.perf_counter() - epoch_start,
        }
        result.curve.append(row)
        on_epoch(row)
        if sign * value > sign * result.best_value:
            result.best_epoch, result.best_value = epoch, value
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        elif train["early_stopping_patience"] and epoch - result.best_epoch >= train["early_stopping_patience"]:
            result.stopped_early = True
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.wall_s = time.perf_counter() - start
    return result
