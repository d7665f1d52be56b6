"""The task protocol: what a task factory returns (:class:`Task`), the loader the core hands it
(:class:`SplitLoader`), the timed stages it may declare (:class:`CostStage`), and the one place
its optional methods are looked up."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch

from vlbench.types.datasets import Batch, Dataset, Field, Split
from vlbench.types.metrics import Metrics

# What a fused model offers a task, by name: the built-in "embedding", "classification" and
# "generation" (vlbench.objectives), or one a plugin registers. A task needs one (or none: a
# cost-only task), a fusion provides some.
Objective = str


class Task(Protocol):
    """What a task factory returns. ``model`` follows the task's objective protocol.

    ``fusion_inputs``, ``cost_stages`` and ``timing`` are optional: a task may leave them out,
    and the engine then uses the default each docstring names (through :func:`fusion_inputs`,
    :func:`cost_stages` and :func:`cost_timing`, the one place that looks them up).
    """

    objective: Objective | None  # None: a cost-only task (measures no quality, needs no fusion)
    required_fields: frozenset[Field]
    main_metric: str

    def num_classes(self, dataset: Dataset | None) -> int | None:
        """Output width the fusion must produce (classification), or None. ``dataset`` is None for a
        task that needs no data (a cost-only task)."""

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        """Scalar training loss for one batch."""

    def evaluate(self, model: Any, split: Split, loader: SplitLoader) -> Metrics:
        """Score ``model`` on ``split``; ``loader`` turns images/captions into tensors."""

    def fusion_inputs(self, dataset: Dataset) -> dict[str, Any]:
        """Optional. More keyword arguments for the fusion factory, taken from the TRAIN split
        (generation: ``{"captions": [...]}`` to fit the decoder's vocabulary); called at build,
        before the model exists. Default: ``{}``."""

    def cost_stages(self, model: Any, split: Split, loader: SplitLoader) -> dict[str, CostStage]:
        """Optional. Extra timed stages (set-up untimed, e.g. a cached gallery), measured on the
        test split after its evaluation. Default: none."""

    def timing(self) -> dict[str, Any]:
        """Optional. Keyword arguments for every timed figure of the cost block
        (:func:`vlbench.cost.time_stage`'s ``warmup``, ``min_iters``, ``max_iters``).
        Default: ``{}`` (the protocol's own)."""


def fusion_inputs(task: Task, dataset: Dataset) -> dict[str, Any]:
    """The task's :meth:`Task.fusion_inputs`, or ``{}`` when it has none."""
    method = getattr(task, "fusion_inputs", None)
    return dict(method(dataset)) if method is not None else {}


def cost_stages(task: Task, model: Any, split: Split, loader: SplitLoader) -> dict[str, CostStage] | None:
    """The task's :meth:`Task.cost_stages`, or None when it declares none."""
    method = getattr(task, "cost_stages", None)
    return method(model, split, loader) if method is not None else None


def cost_timing(task: Task) -> dict[str, Any]:
    """The task's :meth:`Task.timing`, or ``{}`` when it has none."""
    method = getattr(task, "timing", None)
    return dict(method()) if method is not None else {}


@dataclass(frozen=True)
class CostStage:
    """One timed call a task declares; :func:`run_stages` times it like :func:`time_stage`.

    Stages of one ``group`` that differ in ``items`` get the batching ratio
    ``p50(batch n) / (n x p50(batch 1))`` against the group's single-item stage
    (below 1: batching pays).
    """

    fn: Callable[[], object]  # one call: whatever the stage does end to end
    items: int = 1  # samples one call handles: items/s = items / call time
    unit: str = "items"  # what an item is: "images", "queries"
    group: str | None = None  # e.g. "query": stages "query@1" and "query@5"


@runtime_checkable
class SplitLoader(Protocol):
    """Core-provided helper a task uses to batch a split with the run's transforms."""

    device: torch.device

    def images(self, split: Split, batch_size: int | None = None) -> Any:
        """Iterate (index [b], images [b,3,H,W]) over every image of the split, in order."""

    def texts(self, texts: Sequence[str], batch_size: int | None = None) -> Any:
        """Iterate (index [b], TokenizedText) over ``texts``, in order."""

    def autocast(self) -> Any:
        """Context manager with the run's inference precision (no-op in fp32)."""
