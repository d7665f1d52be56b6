"""Objectives: how fusions and tasks meet, as registered protocols.

Each objective is an :class:`ObjectiveSpec` in its own module: :mod:`.embedding`,
:mod:`.classification`, :mod:`.generation`. A plugin adds one through the
``vlbench_register_objectives`` hook; the PluginHost holds the built-ins plus those.
:func:`infer` picks the objective a bare fusion serves (cost measured on a model built by hand).
"""

from __future__ import annotations

from torch import nn

from vlbench.errors import UserError
from vlbench.objectives.base import ObjectiveSpec
from vlbench.objectives.classification import CLASSIFICATION
from vlbench.objectives.embedding import EMBEDDING
from vlbench.objectives.generation import GENERATION
from vlbench.objectives.model import VLModel, symmetric_info_nce

BUILTIN: dict[str, ObjectiveSpec] = {spec.name: spec for spec in (EMBEDDING, CLASSIFICATION, GENERATION)}


def resolve(objective: ObjectiveSpec | str | None, fusion: nn.Module | None = None) -> ObjectiveSpec | None:
    """An ObjectiveSpec from a spec, a built-in name, or (None) the first built-in ``fusion`` serves.

    None back means no fusion at all: encoder-only cost. Objectives a plugin registers are
    passed as specs (``PluginHost.objective(name)``), never looked up here by name.
    """
    if isinstance(objective, ObjectiveSpec):
        return objective
    if objective is not None:
        if objective not in BUILTIN:
            raise UserError(
                f"unknown objective {objective!r}: built-in ones are {sorted(BUILTIN)}; pass a plugin's ObjectiveSpec itself"
            )
        return BUILTIN[objective]
    if fusion is None:
        return None
    return infer(fusion)


def infer(fusion: nn.Module) -> ObjectiveSpec:
    """The first built-in objective whose methods ``fusion`` has (classification: any module)."""
    for spec in (EMBEDDING, GENERATION, CLASSIFICATION):
        if spec.served_by(fusion):
            return spec
    raise UserError(f"{type(fusion).__name__} serves no built-in objective")


__all__ = ["BUILTIN", "ObjectiveSpec", "VLModel", "infer", "resolve", "symmetric_info_nce"]
