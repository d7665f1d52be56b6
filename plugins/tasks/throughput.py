"""Encoder-only throughput: a cost-only task (no data, no training, no quality metric).

The task declares no objective and measures no quality: the run builds the vision encoder
alone (no fusion, no text encoder), skips training and evaluation and records the cost block alone: ``vlbench.cost.measure`` with the
suite's ``cost_batch_sizes`` and ``cost_budget_s``, under timm's benchmark protocol
(synthetic images, inference mode, warm-up, device synchronised after every call). The
record's metrics say ``quality: false`` (results.py accepts that only for such tasks).

``iterations > 0`` fixes the number of timed calls per figure (study 004: batch 32, 100
passes) instead of the time budget; ``warmup`` is the minimum number of warm-up calls.
"""

from __future__ import annotations

from typing import Any

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.types import Register, TaskSpec

OPTIONS = {"iterations": 0, "warmup": 2}


class ThroughputTask:
    objective = None
    required_fields: frozenset = frozenset()
    main_metric = ""
    measures_quality = False

    def __init__(self, iterations: int = 0, warmup: int = 2):
        if iterations < 0 or warmup < 0:
            raise UserError(f"throughput: iterations and warmup must be >= 0, got {iterations} and {warmup}")
        self.iterations = iterations
        self.warmup = warmup

    def timing(self) -> dict[str, Any]:
        """Keyword arguments for vlbench.cost.time_stage (through measure's ``**timing``)."""
        timing: dict[str, Any] = {"warmup": self.warmup}
        if self.iterations:
            timing |= {"min_iters": self.iterations, "max_iters": self.iterations}
        return timing

    def num_classes(self, dataset: Any) -> None:
        return None

    def loss(self, model: Any, batch: Any):
        raise UserError("the throughput task does not train")

    def evaluate(self, model: Any, split: Any, loader: Any):
        raise UserError("the throughput task measures cost only; it has no quality metric")


@hookimpl
def vlbench_register_tasks(register: Register) -> None:
    register(
        TaskSpec(
            name="throughput",
            factory=ThroughputTask,
            description="Encoder-only cost benchmark (params, FLOPs, latency, images/s): no data, no training, no quality metric.",
            options=dict(OPTIONS),
            objective=None,
            required_fields=frozenset(),
            measures_quality=False,
        )
    )
