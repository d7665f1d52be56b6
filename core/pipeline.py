"""What one run does once built: train on train, select on val, score on val and test (or, for
a cost-only task, nothing); then the cost block and, when asked, profiler traces."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch

from vlbench import bootstrap, cost
from vlbench.build import Built, first_batch_check, prepare
from vlbench.data import Precision, SplitBatcher
from vlbench.manager import PluginHost
from vlbench.preflight import captions_at_limit
from vlbench.training import TrainResult, fit, preserved_state, set_train_mode
from vlbench.types.datasets import Batch
from vlbench.types.metrics import Metrics
from vlbench.types.runs import RunSpec
from vlbench.types.tasks import cost_stages, cost_timing


class Reporter(Protocol):
    """What the engine tells a progress display. Every method may be a no-op."""

    def run_started(self, run: RunSpec, total_steps: int) -> None: ...
    def step(self, epoch: int, step: int, loss: float) -> None: ...
    def epoch(self, row: dict[str, float]) -> None: ...
    def stage(self, text: str) -> None: ...
    def run_finished(self, record: dict[str, Any]) -> None: ...


class SilentReporter:
    def run_started(self, run: RunSpec, total_steps: int) -> None: ...
    def step(self, epoch: int, step: int, loss: float) -> None: ...
    def epoch(self, row: dict[str, float]) -> None: ...
    def stage(self, text: str) -> None: ...
    def run_finished(self, record: dict[str, Any]) -> None: ...


def metrics_dict(metrics: Metrics, interval_seed: int | None = None) -> dict[str, Any]:
    """A split's metrics as stored; with ``interval_seed``, the engine's bootstrap intervals
    and the ``ci`` block saying how they were drawn (or why there are none)."""
    block = {
        "values": dict(metrics.values),
        "main": metrics.main,
        "chance": dict(metrics.chance),
        "baselines": {name: dict(values) for name, values in metrics.baselines.items()},
        "ci95": {k: list(v) for k, v in metrics.ci95.items()},
        "units": dict(metrics.units),
        "details": dict(metrics.details),
    }
    if interval_seed is not None:
        block["ci95"], block["ci"] = bootstrap.intervals(metrics, seed=interval_seed)
    return block


def no_quality(run: RunSpec, built: Built, reporter: Reporter) -> dict[str, Any]:
    """A cost-only task: nothing to train or score; the cost protocol's synthetic inputs."""
    reporter.run_started(run, 0)
    dataset = built.dataset
    return {
        "metrics": {"quality": False, "main": None, "higher_is_better": None, "splits": {}},
        "selection": {},
        "training": {},
        "dataset": {"name": None, "synthetic": True, "note": "no dataset: synthetic inputs of the cost protocol"}
        if dataset is None
        else {"name": dataset.name, "split_sizes": {n: len(s) for n, s in dataset.splits.items()}},
    }


def train_and_evaluate(
    run: RunSpec, built: Built, precision: Precision, train_loader: SplitBatcher, eval_loader: SplitBatcher, reporter: Reporter
) -> dict[str, Any]:
    """Train on train, select on val, score the selected checkpoint on val and test."""
    train = run.train
    model, task, dataset = built.model, built.task, built.dataset
    assert dataset is not None, "a task that measures quality has a dataset"
    first_batch_check(built, eval_loader)

    train_split, val_split, test_split = (dataset.splits[name] for name in ("train", "val", "test"))
    samples = sum(len(c) for c in train_split.captions) if train_split.captions is not None else len(train_split)
    steps_per_epoch = max(1, samples // train["batch_size"])
    if train["max_steps_per_epoch"]:
        steps_per_epoch = min(steps_per_epoch, train["max_steps_per_epoch"])
    reporter.run_started(run, steps_per_epoch * train["epochs"])

    def validate() -> Metrics:
        reporter.stage("validating")
        return task.evaluate(model, val_split, eval_loader)

    # A dataset whose captions name sides never sees a flipped image, whatever the RunSpec says.
    hflip = bool(train["hflip"]) and getattr(built.specs["dataset"], "hflip_safe", True)
    result: TrainResult = fit(
        model,
        task.loss,
        lambda epoch: train_loader.train_batches(
            train_split, epoch=epoch, seed=run.seed, hflip=hflip, max_steps=train["max_steps_per_epoch"]
        ),
        steps_per_epoch,
        validate,
        train,
        precision,
        built.frozen,
        on_step=reporter.step,
        on_epoch=reporter.epoch,
        higher_is_better=built.task_spec.higher_is_better,
    )
    reporter.stage("testing")
    val_metrics = validate()  # of the selected checkpoint, stored in full
    test_metrics = task.evaluate(model, test_split, eval_loader)
    splits = {"val": metrics_dict(val_metrics), "test": metrics_dict(test_metrics, interval_seed=run.seed)}
    if train["eval_train_split"]:
        splits["train"] = metrics_dict(task.evaluate(model, train_split, eval_loader))
    return {
        "metrics": {
            "main": test_metrics.main,
            "higher_is_better": built.task_spec.higher_is_better,
            "splits": splits,
        },
        "selection": {
            "split": "val",
            "metric": val_metrics.main,
            "best_epoch": result.best_epoch,
            "best_value": result.best_value,
        },
        "training": {
            "epochs_run": len(result.curve),
            "steps": result.steps,
            "steps_per_epoch": steps_per_epoch,
            "wall_s": result.wall_s,
            "stopped_early": result.stopped_early,
            "first_loss": result.first_loss,
            "curve": result.curve,
            "frozen": sorted(built.frozen),
            "batch_size": train["batch_size"],
            "hflip": hflip,
        },
        "dataset": {
            "name": dataset.name,
            "synthetic": getattr(built.specs["dataset"], "synthetic", False),
            "split_sizes": {name: len(split) for name, split in dataset.splits.items()},
            "select_split": "val",
            "report_split": "test",
            "info": dict(dataset.info),
            **(
                {
                    "token_limit": model.text.info.max_length,
                    "captions_at_token_limit": captions_at_limit(train_loader.tokenize, dataset),
                }
                if train_loader.tokenize is not None and train_split.captions is not None
                else {}
            ),
        },
    }


def measure_cost(
    run: RunSpec, built: Built, precision: Precision, train_loader: SplitBatcher, eval_loader: SplitBatcher
) -> tuple[dict[str, Any], Batch | None]:
    """The cost block of the run's model and the training batch its memory figure used (None
    for a cost-only task: no training, so no training-step memory)."""
    model, task, train = built.model, built.task, run.train
    quality = built.task_spec.measures_quality
    model.eval()
    train_batch, stages = None, None
    if quality:
        assert built.dataset is not None, "a task that measures quality has a dataset"
        batches = train_loader.train_batches(built.dataset.splits["train"], epoch=1, seed=run.seed, hflip=False, max_steps=1)
        train_batch = next(batches)
        batches.close()  # stops the DataLoader's workers
        stages = cost_stages(task, model, built.dataset.splits["test"], eval_loader)
    block = cost.measure(
        model,
        precision,
        image_size=model.vision.info.input_size,
        text_length=model.text.info.max_length if model.text is not None else None,
        batch_sizes=tuple(train["cost_batch_sizes"]),
        budget_s=train["cost_budget_s"],
        objective=built.objective,
        loss_fn=task.loss if quality else None,
        train_batch=train_batch,
        train_memory=quality,
        stages=stages,
        **cost_timing(task),
    )
    return block, train_batch


def remeasure_cost(run: RunSpec, host: PluginHost, cache_dir: Path, device: torch.device) -> dict[str, Any]:
    """A fresh cost block for ``run``: its components built again (weights as configured, not
    trained) and measured as the run measured them. Params, FLOPs, memory and the timing of
    dense models do not depend on the weights' values."""
    built, precision, train_loader, eval_loader = prepare(run, host, cache_dir, device)
    return measure_cost(run, built, precision, train_loader, eval_loader)[0]


def profile(built: Built, precision: Precision, train_batch: Batch | None, out_dir: Path, infer_batch: int = 32) -> None:
    """Traces of a few training steps (forward, loss, backward; no optimizer step) and inference
    steps; weights, buffers, gradients and modes are restored afterwards."""
    from vlbench.profiling import profile_steps

    model, task, device = built.model, built.task, precision.device
    if train_batch is not None:

        def train_step() -> None:
            with precision.autocast():
                loss = task.loss(model, train_batch)
            loss.backward()
            model.zero_grad(set_to_none=True)

        with preserved_state(model):
            set_train_mode(model, built.frozen)
            profile_steps(train_step, out_dir, "train", device)
    batch = (
        train_batch.images
        if train_batch is not None
        else cost.synthetic_images(max(infer_batch, 1), tuple(model.vision.info.input_size), device, precision.channels_last)
    )
    text = train_batch.text if train_batch is not None and model.text is not None else None

    def inference_step() -> None:
        with cost.inference(precision):
            cost.inference_forward(model, built.objective, batch, text)

    profile_steps(inference_step, out_dir, "inference", device)
