"""The built-in component kinds: how a suite names each, how a run builds the model's parts.

A kind is a :class:`~vlbench.types.ComponentKind`. The PluginHost starts from :data:`BUILTIN`
and adds what plugins register with ``vlbench_register_component_kinds``; the suite, the
engine, records and the leaderboard iterate over kinds, so a new kind (a language model)
is a registration plus a spec class.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from vlbench.types import (
    ComponentChoice,
    ComponentKind,
    ComponentSpec,
    DatasetSpec,
    FusionSpec,
    TaskSpec,
    TextEncoderSpec,
    VisionEncoderSpec,
)

# Options every encoder entry takes, handled by the engine rather than the factory's own options.
ENGINE_ENCODER_OPTIONS = ("pretrained", "weights", "freeze")
_WEIGHT_OPTIONS = {
    "weights": ("", "path to a local .safetensors/.pt state dict"),
    "freeze": (False, "keep the encoder's weights fixed"),
}


def split_encoder_options(choice: ComponentChoice) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the options every encoder takes, the options of this encoder's factory) of an encoder choice."""
    shared = {k: choice.options[k] for k in ENGINE_ENCODER_OPTIONS}
    factory_options = {k: v for k, v in choice.options.items() if k not in shared and k != "image_size"}
    return shared, factory_options


def _build_encoder(
    spec: ComponentSpec, choice: ComponentChoice, parts: Mapping[str, Any], inputs: Mapping[str, Any], cache_dir: Path
) -> nn.Module:
    """A vision or text encoder: ``factory(pretrained=, weights=, **own options)``, plus ``image_size=(H, W)``
    for the kinds whose entries have one (vision)."""
    shared, factory_options = split_encoder_options(choice)
    size = {"image_size": tuple(choice.options["image_size"])} if "image_size" in choice.options else {}
    return spec.factory(**size, pretrained=shared["pretrained"], weights=shared["weights"] or None, **factory_options)


def _build_fusion(
    spec: ComponentSpec, choice: ComponentChoice, parts: Mapping[str, Any], inputs: Mapping[str, Any], cache_dir: Path
) -> nn.Module:
    text = parts.get("text")
    needed = {kind: parts[kind] for kind in getattr(spec, "needs", ())}  # built components of the kinds it needs
    return spec.factory(
        vision=parts["vision"].info, text=text.info if text is not None else None, **needed, **inputs, **choice.options
    )


VISION = ComponentKind(
    name="vision",
    order=10,
    spec_type=VisionEncoderSpec,
    register_hook="vlbench_register_vision_encoders",
    axis="vision",
    axis_required=True,
    null_in_config=True,
    build=_build_encoder,
    common_options={
        "image_size": ([], "[H, W] input size; default: the encoder's own"),
        "pretrained": (False, "load weights through the encoder's own offline mechanism"),
        **_WEIGHT_OPTIONS,
    },
)
TEXT = ComponentKind(
    name="text",
    order=20,
    spec_type=TextEncoderSpec,
    register_hook="vlbench_register_text_encoders",
    axis="text",
    null_in_config=True,
    build=_build_encoder,
    common_options={
        "pretrained": (False, "load the encoder's pretrained weights; when not given: the encoder's own default"),
        **_WEIGHT_OPTIONS,
    },
)
FUSION = ComponentKind(
    name="fusion",
    order=50,
    spec_type=FusionSpec,
    register_hook="vlbench_register_fusions",
    axis="fusions",
    null_in_config=True,
    build=_build_fusion,
)
TASK = ComponentKind(
    name="task",
    order=80,
    spec_type=TaskSpec,
    register_hook="vlbench_register_tasks",
    axis="tasks",
    axis_required=True,
    null_in_config=True,
    common_options={
        "dataset": ("", "dataset component; default: the task's default dataset"),
        "dataset_options": ({}, "options of the dataset component"),
    },
)
DATASET = ComponentKind(
    name="dataset", order=90, spec_type=DatasetSpec, register_hook="vlbench_register_datasets", null_in_config=True
)

BUILTIN: tuple[ComponentKind, ...] = (VISION, TEXT, FUSION, TASK, DATASET)
