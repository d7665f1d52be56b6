"""The generic loop: schedule, parameter groups, selection on val, NaN detection."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from vlbench.data import Precision
from vlbench.errors import NonFiniteLossError
from vlbench.objectives import VLModel
from vlbench.training import fit, param_groups, warmup_cosine
from vlbench.types import Batch, Metrics

CPU = Precision(torch.device("cpu"), None, False)
TRAIN = {
    "epochs": 3,
    "lr": 0.1,
    "encoder_lr": 0.01,
    "weight_decay": 0.1,
    "encoder_weight_decay": 0.02,
    "warmup_fraction": 0.25,
    "grad_clip": 1.0,
    "early_stopping_patience": 0,
}


def tiny_model() -> VLModel:
    return VLModel(
        {"vision": nn.Linear(2, 2), "text": nn.Linear(2, 2), "fusion": nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))}
    )


def batches(epoch):
    for _ in range(4):
        yield Batch(images=torch.randn(8, 2), text=None, identities=None, labels=None, index=torch.arange(8))


def test_warmup_then_cosine():
    f = warmup_cosine(100, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(55) == pytest.approx(0.5) and f(99) < 0.01


def test_encoder_and_head_groups_and_no_decay_for_1d_params():
    groups = {g["name"]: g for g in param_groups(tiny_model(), {"text"}, TRAIN)}
    assert set(groups) == {"vision", "vision/no_decay", "fusion", "fusion/no_decay"}
    assert groups["vision"]["lr"] == 0.01 and groups["vision"]["weight_decay"] == 0.02
    assert groups["fusion"]["lr"] == 0.1 and groups["fusion/no_decay"]["weight_decay"] == 0.0


def test_selects_the_best_val_epoch_and_restores_its_weights():
    model = tiny_model()
    scores = iter([10.0, 30.0, 20.0])
    snapshots = []

    def validate():
        snapshots.append({k: v.clone() for k, v in model.state_dict().items()})
        return Metrics(values={"m": next(scores)}, main="m")

    loss = lambda m, b: m.fusion(m.vision(b.images)).pow(2).mean()  # noqa: E731
    result = fit(model, loss, batches, 4, validate, TRAIN, CPU, frozen={"text"})
    assert (result.best_epoch, result.best_value, result.steps) == (2, 30.0, 12)
    assert all(torch.equal(v, snapshots[1][k]) for k, v in model.state_dict().items())
    assert len(result.curve) == 3 and math.isfinite(result.first_loss)


def test_early_stopping():
    scores = iter([5.0, 4.0, 3.0])
    train = {**TRAIN, "early_stopping_patience": 1}
    result = fit(
        tiny_model(),
        lambda m, b: m.vision(b.images).sum() * 0 + 1.0 * m.vision(b.images).mean(),
        batches,
        4,
        lambda: Metrics(values={"m": next(scores)}, main="m"),
        train,
        CPU,
        frozen=set(),
    )
    assert result.stopped_early and len(result.curve) == 2


def test_nan_loss_raises():
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 1"):
        fit(
            tiny_model(),
            lambda m, b: m.vision(b.images).sum() * float("nan"),
            batches,
            4,
            lambda: Metrics(values={"m": 0.0}, main="m"),
            TRAIN,
            CPU,
            frozen=set(),
        )


def test_selects_the_lowest_val_value_when_lower_is_better():
    scores = iter([30.0, 10.0, 20.0])
    validate = lambda: Metrics(values={"error": next(scores)}, main="error")  # noqa: E731
    loss = lambda m, b: m.fusion(m.vision(b.images)).pow(2).mean()  # noqa: E731
    result = fit(tiny_model(), loss, batches, 4, validate, TRAIN, CPU, frozen={"text"}, higher_is_better=False)
    assert (result.best_epoch, result.best_value) == (2, 10.0)
