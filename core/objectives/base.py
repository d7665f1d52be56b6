"""What an objective is: the protocol between fusions, tasks and the cost measurement.

An objective is registered data, not an engine branch. Each built-in lives in its own
module (:mod:`.embedding`, :mod:`.classification`, :mod:`.generation`); a plugin adds one
with the ``vlbench_register_objectives`` hook. The engine, the cost code, the mocks and the
conformance kit only ever call the functions an :class:`ObjectiveSpec` carries.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vlbench.types.encoders import EncoderOutput, TokenizedText

if TYPE_CHECKING:
    from vlbench.objectives.model import VLModel


@dataclass(frozen=True, kw_only=True)
class ObjectiveSpec:
    """One objective: what a fusion implements, what a task may call, how cost is measured.

    ``fuse`` and ``synthetic_loss`` are the cost protocol: the fusion's share of one inference
    forward on encoder outputs (FLOPs, latency and memory run it), and a loss on synthetic
    inputs for the training-step memory when no real batch is at hand. ``extra_cost`` adds
    figures only this objective has (generation: prefill and per-token decode).
    """

    name: str
    description: str
    fusion_methods: Mapping[str, str]  # method -> contract, what a fusion must implement
    model_methods: Mapping[str, str]  # VLModel method -> contract, what a task may call
    fuse: Callable[[VLModel, EncoderOutput, EncoderOutput | None], Any]
    synthetic_loss: Callable[[VLModel, torch.Tensor, TokenizedText | None], torch.Tensor]
    check_fusion: Callable[[nn.Module, EncoderOutput, EncoderOutput | None, int, str], None]  # the contract kit's check
    # The model's own target encoder, e.g. the decoder's tokenizer: texts -> ids [B, T] (Batch.targets).
    targets: Callable[[VLModel], Callable[[list[str]], torch.Tensor] | None] = lambda model: None
    extra_cost: Callable[..., dict[str, Any]] | None = None
    # What the conformance kit passes a fusion factory of this objective besides num_classes
    # (generation: a few captions to fit the decoder's vocabulary on).
    contract_inputs: Mapping[str, Any] = field(default_factory=dict)
    # The conformance kit's mock task for this objective, and whether it needs a text encoder.
    mock_task: str | None = None
    mock_task_needs_text: bool = False
    # Filled in by the PluginHost for objectives a plugin registers:
    plugin: str = field(default="vlbench", compare=False)

    def served_by(self, fusion: nn.Module | None) -> bool:
        """Whether ``fusion`` has every method this objective needs."""
        return fusion is not None and all(callable(getattr(fusion, method, None)) for method in self.fusion_methods)
