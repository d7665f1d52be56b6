"""Study 004's captioner ("CNNGemma"): visual tokens as the prefix of a decoder-only language model.

Serves the ``generation`` objective; the model is :class:`._prefix_lm.PrefixLM`. The fusion
needs a ``language_model`` component (``FusionSpec.needs``): the suite's
``[[language_models]]`` entry is built first and handed to the factory, and its tokenizer is
the captions' vocabulary (the task's train captions are not needed). Options:

- ``tokens``: ``"single"`` (the pooled feature, 1 token) or ``"multi"`` (the spatial map,
  7x7 = 49 for a CNN at 224);
- ``grid``: with multi, average-pool the map to ``grid`` x ``grid`` first (0 = the encoder's grid);
- ``projection``: ``"linear"`` or ``"mlp"`` (Linear-GELU-Linear) into the LM's width;
- ``lm_training``: ``"frozen"`` (only the projection and the vision encoder train), ``"full"``
  or ``"embeddings"`` (the LM's input embeddings only; tied to its output layer in SmolLM2
  and tiny_llama);
- ``max_length``: caption positions, BOS and EOS included.

The loss is the generation objective's teacher-forced cross-entropy over caption positions
only (the prefix positions produce no logits). A prefix that with ``max_length`` does not
fit the LM's context is refused when the suite loads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from vlbench import hookimpl
from vlbench.plugins.fusion._prefix_lm import LM_TRAINING, PROJECTIONS, TOKENS, PrefixLM
from vlbench.plugins.language_models._causal_lm import CausalLM
from vlbench.types import ComponentSpec, FusionSpec, Register, TextInfo, VisionInfo

OPTIONS: dict[str, Any] = {"tokens": "single", "grid": 0, "projection": "linear", "lm_training": "frozen", "max_length": 32}


def check_options(options: Mapping[str, Any]) -> None:
    """Out-of-range options, found when the suite loads, before anything is built."""
    for key, allowed in (("tokens", TOKENS), ("projection", PROJECTIONS), ("lm_training", LM_TRAINING)):
        if options[key] not in allowed:
            raise ValueError(f"{key} must be one of {', '.join(repr(a) for a in allowed)}, got {options[key]!r}")
    if options["grid"] < 0:
        raise ValueError(f"grid must be 0 (the encoder's own grid) or a side length >= 1, got {options['grid']}")
    if options["grid"] and options["tokens"] != "multi":
        raise ValueError(f'grid pools the multi-token map; with tokens = "single" leave it at 0, got {options["grid"]}')
    if options["max_length"] < 3:
        raise ValueError(f"max_length must be at least 3 (BOS, a token, EOS), got {options['max_length']}")


_GRIDS: dict[tuple[str, str, str], tuple[int, int] | None] = {}  # (encoder, plugin, options) -> grid, per process


def _vision_grid(spec: ComponentSpec, options: Mapping[str, Any]) -> tuple[int, int] | None:
    """The encoder's token grid at the run's image size, from a build on the meta device
    (shapes only: no weights allocated or loaded)."""
    key = (spec.name, spec.plugin, json.dumps(dict(options), sort_keys=True, default=str))
    if key not in _GRIDS:
        own = {k: v for k, v in options.items() if k not in ("pretrained", "weights", "freeze", "image_size")}
        with torch.device("meta"):
            encoder = spec.factory(image_size=tuple(options["image_size"]), pretrained=False, weights=None, **own)
        _GRIDS[key] = encoder.info.grid_size
    return _GRIDS[key]


def prefix_length(options: Mapping[str, Any], vision: tuple[ComponentSpec, Mapping[str, Any]] | None) -> int | None:
    """Visual tokens in front of the caption; None when the encoder's grid cannot be known here."""
    if options["tokens"] == "single":
        return 1
    if options["grid"]:
        return options["grid"] ** 2
    if vision is None:
        return None
    grid = _vision_grid(*vision)
    return grid[0] * grid[1] if grid else None  # no grid: PrefixLM refuses multi when it is built


def check_run(components: Mapping[str, tuple[ComponentSpec, Mapping[str, Any]]]) -> None:
    """At suite load: the visual prefix and ``max_length`` fit the language model's context."""
    _, options = components["fusion"]
    lm_spec, lm_options = components["language_model"]
    context_of = getattr(lm_spec, "context_length", None)  # LanguageModelSpec.context_length, when it is given
    context = context_of(lm_options) if context_of is not None else None
    length = prefix_length(options, components.get("vision"))
    if context is None or length is None or length + options["max_length"] <= context:
        return
    raise ValueError(
        f"{length} visual tokens + max_length {options['max_length']} caption tokens = {length + options['max_length']} "
        f"exceed the context of language model {lm_spec.name!r} ({context} positions). Lower `max_length`, set "
        f'`grid` (tokens = "multi" pools the map to grid x grid), use tokens = "single", or a model with a longer context.'
    )


def factory(
    vision: VisionInfo,
    text: TextInfo | None,
    language_model: CausalLM,
    num_classes: int | None = None,
    captions: Sequence[str] | None = None,
    **options: Any,
) -> PrefixLM:
    """``captions`` (the task's train captions) are unused: the LM's tokenizer is the vocabulary."""
    check_options(options)
    return PrefixLM(
        vision,
        language_model,
        tokens=options["tokens"],
        grid=options["grid"] or None,
        projection=options["projection"],
        lm_training=options["lm_training"],
        max_length=options["max_length"],
    )


@hookimpl
def vlbench_register_fusions(register: Register) -> None:
    register(
        FusionSpec(
            name="prefix_lm",
            factory=factory,
            description=(
                "Visual tokens (pooled: single; spatial map: multi) projected into a decoder-only language "
                "model's embeddings as a caption prefix (study 004); the LM frozen, fully trained or embeddings only."
            ),
            options=dict(OPTIONS),
            objectives=frozenset({"generation"}),
            uses_text=False,
            needs=frozenset({"language_model"}),
            check_options=check_options,
            check_run=check_run,
        )
    )
