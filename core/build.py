"""Building a run: its dataset, task and model parts in build order, its precision and the
batchers that feed the training loop and the task's evaluation."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from vlbench.data import Precision, SplitBatcher, resolve_precision
from vlbench.errors import PluginError, UserError
from vlbench.manager import PluginHost
from vlbench.objectives import ObjectiveSpec, VLModel
from vlbench.preflight import dataset_for
from vlbench.types.datasets import Dataset
from vlbench.types.encoders import EncoderOutput
from vlbench.types.runs import ComponentChoice, RunSpec
from vlbench.types.specs import ComponentSpec, TaskSpec
from vlbench.types.tasks import Task, fusion_inputs


@dataclass
class Built:
    """A run's components, built and ready."""

    specs: dict[str, ComponentSpec]
    dataset: Dataset | None  # None for a cost-only task that needs no data
    task: Task
    objective: ObjectiveSpec | None  # None: a cost-only task (no fusion)
    model: VLModel
    frozen: set[str]
    weights: dict[str, str] = field(default_factory=dict)  # component -> provenance of its weights
    provenance: dict[str, Any] = field(default_factory=dict)  # component -> where packaged weights came from

    @property
    def task_spec(self) -> TaskSpec:
        return cast(TaskSpec, self.specs["task"])  # specs are typed ComponentSpec; tasks register TaskSpec


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError(
            'device "cuda" was asked for (suite.device or --device) but torch sees no CUDA device: use "auto" or "cpu".'
        )
    return torch.device(requested)


def _weights_label(choice: ComponentChoice, pretrained: bool) -> str:
    if choice.options.get("weights"):
        digest = hashlib.sha256(Path(choice.options["weights"]).expanduser().read_bytes()).hexdigest()
        return f"file:{choice.options['weights']} sha256:{digest[:16]}"
    return "pretrained" if pretrained else "random-init"


def check_encoder_output(spec: ComponentSpec, out: Any, batch: int, token_dim: int, pooled_dim: int) -> None:
    """Catch a plugin that breaks the EncoderOutput contract on its first batch."""
    who = f"{spec.name!r} (plugin {spec.plugin!r}, {spec.distribution} {spec.version})"
    if not isinstance(out, EncoderOutput):
        raise PluginError(f"encoder {who} returned {type(out).__name__}, not an EncoderOutput")
    tokens, pooled = out.tokens, out.pooled
    if tokens.ndim != 3 or tokens.shape[0] != batch or tokens.shape[2] != token_dim:
        raise PluginError(f"encoder {who} returned tokens of shape {tuple(tokens.shape)}; expected [{batch}, N, {token_dim}]")
    if tuple(pooled.shape) != (batch, pooled_dim):
        raise PluginError(f"encoder {who} returned pooled of shape {tuple(pooled.shape)}; expected [{batch}, {pooled_dim}]")
    if out.mask is not None and tuple(out.mask.shape) != tuple(tokens.shape[:2]):
        raise PluginError(f"encoder {who} returned a mask of shape {tuple(out.mask.shape)} for tokens {tuple(tokens.shape)}")
    if not (torch.isfinite(tokens).all() and torch.isfinite(pooled).all()):
        raise PluginError(f"encoder {who} returned NaN or infinite values on its first batch")


def build(run: RunSpec, host: PluginHost, cache_dir: Path, device: torch.device) -> Built:
    """Dataset, task and every model kind of the run, in build order; frozen parts set."""
    specs = {kind: host.get(kind, choice.name) for kind, choice in run.components.items() if choice is not None}
    dataset = None
    if run.choice("dataset") is not None:
        dataset = dataset_for(run, specs["dataset"].factory, cache_dir)
    seed_everything(run.seed)
    task_spec = cast(TaskSpec, specs["task"])  # the host's specs are typed ComponentSpec; tasks register TaskSpec
    task = task_spec.factory(**run.require("task").options)
    objective = host.objective(task_spec.objective) if task_spec.objective is not None else None
    # What the fusion factory takes from the task: num_classes (classification) and the task's own
    # inputs (generation: the TRAIN captions to fit the decoder's vocabulary).
    inputs = {"num_classes": task.num_classes(dataset)}
    if dataset is not None:
        inputs |= fusion_inputs(task, dataset)
    parts: dict[str, Any] = {}
    frozen: set[str] = set()
    weights: dict[str, str] = {}
    for kind in host.model_kinds():
        if kind.name not in run.components:
            continue
        choice = run.choice(kind.name)
        if choice is None:
            parts[kind.name] = None
            continue
        assert kind.build is not None  # model_kinds() lists the kinds that build
        parts[kind.name] = kind.build(specs[kind.name], choice, parts, inputs, cache_dir)
        if "pretrained" in choice.options:
            weights[kind.name] = _weights_label(choice, choice.options["pretrained"])
        if choice.options.get("freeze"):
            frozen.add(kind.name)
    # A part whose weights another part fixed (a fusion that keeps its language model frozen) is
    # frozen too: eval mode while training, no optimizer group, listed in the record.
    frozen |= {
        name
        for name, part in parts.items()
        if part is not None and any(True for _ in part.parameters()) and not any(p.requires_grad for p in part.parameters())
    }
    model = VLModel(parts)
    for part in frozen:
        model.components()[part].requires_grad_(False)
    model.to(device)
    # Weights served from a package (e.g. EfficientNet-Lite0) say where they came from; third-party
    # components may predate the attribute.
    provenance = {
        name: dict(part.weights_provenance) for name, part in parts.items() if getattr(part, "weights_provenance", None)
    }
    return Built(specs, dataset, task, objective, model, frozen, weights, provenance)


def first_batch_check(built: Built, loader: SplitBatcher, split_name: str = "train") -> None:
    """Catch an encoder that breaks the EncoderOutput contract before any training step."""
    assert built.dataset is not None, "a run that trains has a dataset"
    split = built.dataset.splits[split_name]
    model = built.model
    _, images = next(loader.images(split, batch_size=2))
    with torch.inference_mode():
        check_encoder_output(
            built.specs["vision"], model.vision(images), len(images), model.vision.info.token_dim, model.vision.info.pooled_dim
        )
        if model.text is not None and split.captions is not None:
            _, text = next(loader.texts([caps[0] for caps in split.captions[:2]]))
            check_encoder_output(
                built.specs["text"], model.text(text), len(text), model.text.info.token_dim, model.text.info.pooled_dim
            )


def prepare(
    run: RunSpec, host: PluginHost, cache_dir: Path, device: torch.device
) -> tuple[Built, Precision, SplitBatcher, SplitBatcher]:
    """The run's components built, its precision, and its training and evaluation batchers."""
    built = build(run, host, cache_dir, device)
    train = run.train
    precision = resolve_precision(device, train["amp"], train["channels_last"])
    if precision.channels_last:
        built.model.to(memory_format=torch.channels_last)
    model = built.model
    tokenize = model.text.tokenize if model.text is not None else None
    targets = built.objective.targets(model) if built.objective is not None else None  # e.g. the decoder's caption ids
    batcher_options = dict(
        vision=model.vision.info,
        tokenize=tokenize,
        precision=precision,
        num_workers=train["num_workers"],
        num_classes=built.task.num_classes(built.dataset),
        targets=targets,
    )
    return (
        built,
        precision,
        SplitBatcher(batch_size=train["batch_size"], **batcher_options),
        SplitBatcher(batch_size=train["eval_batch_size"], **batcher_options),
    )
