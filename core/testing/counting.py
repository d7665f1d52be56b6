"""Count a module class's forward passes while runs execute, outside the cost measurement
(which always runs the real module to time it): how tests and benchmarks show that a cache
saves work, e.g. that a frozen text tower computes nothing after the first run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import nn

from vlbench import cost


@dataclass
class ForwardPasses:
    calls: int = 0  # forward calls so far, those inside cost.measure not counted
    measuring: bool = False


@contextmanager
def counting_forward_passes(module_class: type[nn.Module]) -> Iterator[ForwardPasses]:
    """Within the block, every ``module_class.forward`` call outside ``cost.measure`` adds one to
    the yielded counter's ``calls``; read it before and after a run for that run's passes.
    Patches the class and ``vlbench.cost.measure`` (which the engine calls through the module),
    and restores both on exit."""
    passes = ForwardPasses()
    forward, measure = module_class.forward, cost.measure

    def counting(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        passes.calls += not passes.measuring
        return forward(self, *args, **kwargs)

    def measuring(*args: Any, **kwargs: Any) -> Any:
        passes.measuring = True
        try:
            return measure(*args, **kwargs)
        finally:
            passes.measuring = False

    module_class.forward = counting
    cost.measure = measuring
    try:
        yield passes
    finally:
        module_class.forward = forward
        cost.measure = measure
