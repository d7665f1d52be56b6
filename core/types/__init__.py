"""The contract between the vlbench core and its plugins.

Plugins register *specs* (cheap, frozen descriptions with a lazy ``factory``); the core
builds components from them only when a run needs them. Encoders return
:class:`EncoderOutput`; fusions turn encoder outputs into what a task's *objective* needs;
tasks turn a model and a data split into :class:`Metrics`.

Plugins import every name from here (``from vlbench.types import Split, TaskSpec``); each is
defined in the submodule of its part of the contract:

- :mod:`vlbench.types.specs`: what plugins register (``ComponentSpec`` and one subclass per
  built-in kind, ``ComponentKind``, ``Register``, ``Kind``).
- :mod:`vlbench.types.encoders`: what encoders return and declare (``EncoderOutput``,
  ``VisionInfo``, ``TextInfo``, ``TokenizedText``, ``VisionEncoder``, ``TextEncoder``).
- :mod:`vlbench.types.datasets`: ``Dataset``, ``Split``, ``Batch``, ``Field``.
- :mod:`vlbench.types.metrics`: ``Metrics`` and the ``UnitScores`` behind their intervals.
- :mod:`vlbench.types.tasks`: the ``Task`` protocol, ``SplitLoader``, ``CostStage``, ``Objective``.
- :mod:`vlbench.types.runs`: ``RunSpec``, ``ComponentChoice``, ``ResultRecord``, ``RunContext``.
"""

from __future__ import annotations

from vlbench.types.datasets import Batch, Dataset, Field, Split
from vlbench.types.encoders import EncoderOutput, TextEncoder, TextInfo, TokenizedText, VisionEncoder, VisionInfo
from vlbench.types.metrics import Metrics, UnitScores
from vlbench.types.runs import ComponentChoice, ResultRecord, ResultRecordDict, RunContext, RunSpec
from vlbench.types.specs import (
    ComponentKind,
    ComponentSpec,
    DatasetSpec,
    FusionSpec,
    Kind,
    Register,
    TaskSpec,
    TextEncoderSpec,
    VisionEncoderSpec,
)
from vlbench.types.tasks import CostStage, Objective, SplitLoader, Task, cost_stages, cost_timing, fusion_inputs

__all__ = [
    "Batch",
    "ComponentChoice",
    "ComponentKind",
    "ComponentSpec",
    "CostStage",
    "Dataset",
    "DatasetSpec",
    "EncoderOutput",
    "Field",
    "FusionSpec",
    "Kind",
    "Metrics",
    "Objective",
    "Register",
    "ResultRecord",
    "ResultRecordDict",
    "RunContext",
    "RunSpec",
    "Split",
    "SplitLoader",
    "Task",
    "TaskSpec",
    "TextEncoder",
    "TextEncoderSpec",
    "TextInfo",
    "TokenizedText",
    "UnitScores",
    "VisionEncoder",
    "VisionEncoderSpec",
    "VisionInfo",
    "cost_stages",
    "cost_timing",
    "fusion_inputs",
]
