"""The contract between the vlbench core and its plugins.

Plugins register *specs* (cheap, frozen descriptions with a lazy ``factory``); the core
builds components from them only when a run needs them. Encoders return
:class:`EncoderOutput`; fusions turn encoder outputs into what a task's *objective* needs;
tasks turn a model and a data split into :class:`Metrics`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from vlbench.pretrained import WeightsSource

# A component kind's name: the built-in "vision", "text", "fusion", "task", "dataset", or one a
# plugin registers (:class:`ComponentKind`, ``vlbench_register_component_kinds``).
Kind = str

# What a fused model offers a task, by name: the built-in "embedding", "classification" and
# "generation" (vlbench.objectives), or one a plugin registers. A task needs one (or none: a
# cost-only task), a fusion provides some.
Objective = str

# Per-sample fields a dataset can provide and a task can require.
Field = Literal["image", "captions", "identity", "labels"]


# ---------------------------------------------------------------- encoder outputs


@dataclass(frozen=True)
class EncoderOutput:
    tokens: torch.Tensor  # [B, N, token_dim]; CNN maps flattened row-major after any prefix tokens
    pooled: torch.Tensor  # [B, pooled_dim]; the encoder's own global summary
    mask: torch.Tensor | None = None  # [B, N] bool, True = real token; None = all real


@dataclass(frozen=True)
class VisionInfo:
    token_dim: int  # width of EncoderOutput.tokens
    pooled_dim: int  # width of EncoderOutput.pooled (may differ, e.g. MobileNetV3 960 vs 1280)
    input_size: tuple[int, int]  # (H, W) the encoder is built for
    mean: tuple[float, float, float]  # normalisation the weights expect
    std: tuple[float, float, float]
    num_prefix_tokens: int = 0  # ViT class/register tokens in front of the patch tokens
    grid_size: tuple[int, int] | None = None  # (h, w) of the spatial tokens, when spatial


@dataclass(frozen=True)
class TextInfo:
    token_dim: int
    pooled_dim: int
    max_length: int  # tokenizer pads/truncates to this many tokens


@dataclass(frozen=True)
class TokenizedText:
    input_ids: torch.Tensor  # [B, max_length] int64
    attention_mask: torch.Tensor  # [B, max_length] bool, True = real token

    def to(self, device: torch.device | str) -> TokenizedText:
        return TokenizedText(self.input_ids.to(device), self.attention_mask.to(device))

    def __len__(self) -> int:
        return self.input_ids.shape[0]


class VisionEncoder(nn.Module):
    """Base for vision encoders: ``forward(images [B,3,H,W]) -> EncoderOutput``."""

    info: VisionInfo
    # Where loaded pretrained weights came from (package, version, file, sha256), for the
    # record; None for random init or weights whose source vlbench cannot name.
    weights_provenance: Mapping[str, Any] | None = None

    def forward(self, images: torch.Tensor) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError


class TextEncoder(nn.Module):
    """Base for text encoders; each owns its tokenizer."""

    info: TextInfo

    def tokenize(self, texts: Sequence[str]) -> TokenizedText:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, text: TokenizedText) -> EncoderOutput:  # pragma: no cover - abstract
        raise NotImplementedError


# ---------------------------------------------------------------- data


@dataclass(frozen=True)
class Split:
    """One split of a dataset: parallel columns, images loaded on demand."""

    name: str  # "train", "val" or "test"
    ids: Sequence[str]  # stable sample ids (file names), unique within the dataset
    load_image: Callable[[int], np.ndarray]  # index -> HWC uint8 RGB
    captions: Sequence[tuple[str, ...]] | None = None  # one or more captions per image
    identities: Sequence[int] | None = None  # person/instance id (retrieval matches on it)
    labels: Sequence[tuple[int, ...]] | None = None  # multi-label class indices 0..C-1
    # A fixed caption set image->text retrieval ranks against instead of the split's own
    # captions (study 003: one caption per ordered class pair), each with the key it matches:
    # an image matches the candidates whose key equals its identity.
    candidates: Sequence[str] | None = None
    candidate_keys: Sequence[int] | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Dataset:
    name: str  # e.g. "synthetic_pedestrians", "cuhk_pedes"
    splits: Mapping[str, Split]  # must hold "train", "val" and "test"
    class_names: tuple[str, ...] = ()  # for labelled datasets
    info: Mapping[str, Any] = field(default_factory=dict)  # provenance: root, checksum, stats


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor  # [B, 3, H, W] normalised
    text: TokenizedText | None  # one caption per image, tokenized by the run's text encoder
    identities: torch.Tensor | None  # [B] int64
    labels: torch.Tensor | None  # [B, C] float multi-hot
    index: torch.Tensor  # [B] position in the split
    # [B, T] int64 caption ids from the model's own target tokenizer (generation: the decoder's
    # vocabulary, BOS first, EOS last, PAD after), not the text encoder's; None when unused.
    targets: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device, non_blocking=True)

        return Batch(
            images=self.images.to(device, non_blocking=True),
            text=None if self.text is None else self.text.to(device),
            identities=move(self.identities),
            labels=move(self.labels),
            index=self.index,
            targets=move(self.targets),
        )


# ---------------------------------------------------------------- metrics


@dataclass(frozen=True)
class UnitScores:
    """What the engine resamples for the confidence intervals of a split's headline metrics.

    A resample draws ``unit`` labels with replacement (as many as there are) and brings in
    every item of each drawn unit: for person search the unit is an identity and its items are
    its queries (the gallery stays fixed); for multi-label classification the unit is an image.
    """

    unit: str  # what is drawn: "identity", "image", ...
    # metric -> (unit label of each scored item [n], the item's score [n]); the metric is their mean
    scores: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)
    # For metrics that are no mean of item scores (macro mAP, micro F1): one resample's unit
    # labels (an array, repeats allowed) -> {metric: value}; called once per resample.
    statistic: Callable[[np.ndarray], Mapping[str, float]] | None = None
    units: Any = None  # every unit label (needed with ``statistic`` alone); default: those in scores
    n_resamples: int | None = None  # None: the engine's default (1000); 0: no interval


@dataclass(frozen=True)
class Metrics:
    values: Mapping[str, float]  # metric name -> value (percent where the task says so)
    main: str  # the key of values used for selection and ranking
    chance: Mapping[str, float] = field(default_factory=dict)  # what a random scorer gets, where that exists
    # Named reference scores where no chance level exists (BLEU, CIDEr): baseline -> metric -> value,
    # e.g. {"most frequent train caption": {"CIDEr-D": 4.1}}. A task reports a chance level or a
    # baseline for its main metric; records, the terminal line and the leaderboard show either.
    baselines: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    ci95: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # filled by the engine from per_unit
    units: Mapping[str, str] = field(default_factory=dict)  # e.g. {"R1": "%"}
    details: Mapping[str, Any] = field(default_factory=dict)  # sizes, per-class tables, ...
    per_unit: UnitScores | None = None  # what the engine bootstraps (core/bootstrap.py)
    no_interval: str = ""  # why there is no per_unit, recorded in place of an interval


# ---------------------------------------------------------------- tasks


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


# ---------------------------------------------------------------- specs


@dataclass(frozen=True, kw_only=True)
class ComponentSpec:
    name: str  # unique within its kind; what suites write
    factory: Callable[..., Any]  # lazy: called with the resolved options only when a run needs it
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)  # option -> default; types come from defaults
    # Optional: check_options(options) raises ValueError (or UserError) saying which option is out of range and
    # why; suite validation calls it with the resolved options, before anything is built.
    check_options: Callable[[Mapping[str, Any]], object] | None = None  # what it returns is ignored
    # Optional: check_run(components) raises ValueError (or UserError) when this component cannot work with the
    # run's other components (a prefix longer than a language model's context); ``components`` maps each chosen
    # kind to (spec, resolved options). Suite validation calls it once per run, before anything is built.
    check_run: Callable[[Mapping[str, tuple[ComponentSpec, Mapping[str, Any]]]], None] | None = None
    # Optional, for kinds with a ``pretrained`` option: weights_source(options) says where ``pretrained = true`` loads
    # from (a Hugging Face repo, a URL, a packaged file), for `vlbench weights` and records; None: the plugin's own.
    weights_source: Callable[[Mapping[str, Any]], WeightsSource] | None = None
    # Filled in by the PluginHost, never by the plugin:
    plugin: str = ""  # entry-point name of the registering plugin
    distribution: str = ""  # the installed distribution that ships it
    version: str = ""


@dataclass(frozen=True, kw_only=True)
class VisionEncoderSpec(ComponentSpec):
    """factory(image_size=(H, W), pretrained=bool, weights=path | None, **options) -> VisionEncoder."""

    default_image_size: tuple[int, int] = (224, 224)
    family: str = ""  # e.g. "MobileNetV3"; groups rows on the leaderboard


@dataclass(frozen=True, kw_only=True)
class TextEncoderSpec(ComponentSpec):
    """factory(pretrained=bool, weights=path | None, **options) -> TextEncoder."""

    pretrained_by_default: bool = False  # weights ship with the package (no hub)


@dataclass(frozen=True, kw_only=True)
class FusionSpec(ComponentSpec):
    """factory(vision=VisionInfo, text=TextInfo | None, num_classes=int | None, **options) -> nn.Module."""

    objectives: frozenset[Objective]  # what the fused model can serve
    uses_text: bool = True  # False: the run builds no text encoder (image-only ablation)
    # Kinds a plugin registered with ``fusion_input=True`` (e.g. "language_model") whose built component the
    # factory receives as a keyword of the kind's name; a run of this fusion must choose one.
    needs: frozenset[Kind] = frozenset()


@dataclass(frozen=True, kw_only=True)
class TaskSpec(ComponentSpec):
    """factory(**options) -> Task."""

    objective: Objective | None  # None with measures_quality=False: a cost-only task, no fusion
    required_fields: frozenset[Field]
    default_dataset: str = ""
    # False: a cost-only task (e.g. ``throughput``, objective None): no fusion, no dataset needed
    # when required_fields is empty, no training, no evaluation; the record carries the cost block and
    # ``metrics = {"quality": False, "splits": {}, "main": None}``.
    measures_quality: bool = True
    # Direction of the main metric (e.g. False for an error rate): checkpoint selection on val
    # and the leaderboard's ranking follow it.
    higher_is_better: bool = True


@dataclass(frozen=True, kw_only=True)
class DatasetSpec(ComponentSpec):
    """factory(cache_dir=Path, seed=int, **options) -> Dataset."""

    provides: frozenset[Field]
    synthetic: bool = False  # generated, not a public dataset
    # What the data's content fingerprint covers (core/fingerprint.py): a loader names the files
    # it reads, content_files(**options) -> paths (checksummed); a generator bumps
    # content_version whenever its output changes (default: its distribution's version).
    content_files: Callable[..., Iterable[Any]] | None = None
    content_version: str = ""
    # False when mirroring an image can contradict its caption ("left"/"right" in it): the
    # engine never flips such a dataset's images, and a suite asking for hflip is refused.
    hflip_safe: bool = True


Register = Callable[[ComponentSpec], None]


@dataclass(frozen=True, kw_only=True)
class ComponentKind:
    """A kind of component: how suites name it, how plugins register it, how a run builds it.

    The built-in kinds live in :mod:`vlbench.kinds`; a plugin adds one (e.g. a language model)
    with ``vlbench_register_component_kinds`` and registers its specs through
    ``vlbench_register_components``, so no field is added across the core.
    """

    name: Kind
    spec_type: type[ComponentSpec]
    order: int  # build and display order: vision 10, text 20, fusion 50, task 80, dataset 90
    register_hook: str = "vlbench_register_components"  # the hook whose ``register`` takes its specs
    axis: str | None = None  # the suite's array of tables ([[vision]]); None: not a suite axis
    axis_required: bool = False  # a suite must have at least one entry
    common_options: Mapping[str, tuple[Any, str]] = field(default_factory=dict)  # key -> (default, help), for every entry
    # Built into the VLModel: build(spec, choice, parts, inputs, cache_dir) -> nn.Module, where parts holds
    # the model kinds built before (None where not built), inputs the task's fusion inputs and
    # cache_dir the run's cache folder (converted or downloaded weights).
    build: Callable[..., nn.Module] | None = None
    # True: built only for fusions that list the kind in ``FusionSpec.needs`` (they receive the built component);
    # runs of other fusions drop the axis, and a fusion that needs it without an entry is refused at suite load.
    fusion_input: bool = False
    # Before any run (``vlbench run``'s preflight): preflight(spec, choice, cache_dir) raises a UserError when the
    # entry cannot be built (missing extra, unreadable weights). None: entries with ``pretrained`` or ``weights``
    # are built once and dropped, as encoders are.
    preflight: Callable[..., None] | None = None
    # The conformance kit: check(spec, cache_dir, **options) raises AssertionError when a component breaks the
    # kind's contract; contract_component() is a small built component for the fusion checks of ``needs``.
    check: Callable[..., None] | None = None
    contract_component: Callable[[], nn.Module] | None = None
    # Written as null into the run's config when the run has none: the kinds of the first record
    # schema, so the run ids of existing records stay what they were.
    null_in_config: bool = False


# ---------------------------------------------------------------- runs and records


@dataclass(frozen=True)
class ComponentChoice:
    name: str  # registry name
    options: Mapping[str, Any]  # resolved options, defaults filled in


@dataclass(frozen=True)
class RunSpec:
    """One fully resolved run; its id is a hash of everything here but ``suite``."""

    suite: str  # suite name: results go under results/<suite>/
    # kind -> choice, in build order: vision (options include image_size, pretrained, weights,
    # freeze), text, fusion, task, dataset, and any kind a plugin registers. None: a kind the
    # run declares but does not build (no text encoder; no dataset for a cost-only task).
    components: Mapping[Kind, ComponentChoice | None]
    train: Mapping[str, Any]  # resolved training options (epochs, lr, batch_size, ...)
    seed: int  # model init, data order, augmentation
    data_seed: int  # dataset generation and splits: equal across runs so they share data
    run_id: str  # sha256 of the canonical config, 16 hex digits

    def choice(self, kind: Kind) -> ComponentChoice | None:
        return self.components.get(kind)

    def require(self, kind: Kind) -> ComponentChoice:
        """The choice of a kind this run builds (its task; the dataset or vision encoder where the caller needs one)."""
        choice = self.components.get(kind)
        if choice is None:
            raise KeyError(f"run {self.run_id} ({self.suite}) has no {kind} component")
        return choice

    @property
    def label(self) -> str:
        """e.g. ``vit_small+no-text+contrastive/person_search``: the model's parts, then the task."""
        parts = [c.name if c else f"no-{kind}" for kind, c in self.components.items() if kind not in ("task", "dataset")]
        task = self.components["task"]
        return f"{'+'.join(parts)}/{task.name if task else 'no-task'}"


@dataclass(frozen=True)
class ResultRecord:
    """One run's outcome; serialised as JSON, validated on write and on read (results.py)."""

    schema_version: int
    run_id: str
    suite: str
    label: str
    status: Literal["ok", "error"]
    error: Mapping[str, str] | None  # {"type", "message", "traceback"} when status == "error"
    components: Mapping[str, Mapping[str, Any]]  # kind -> {name, plugin, distribution, version, options, weights}
    config: Mapping[str, Any]  # the resolved RunSpec as JSON
    metrics: Mapping[str, Any]  # {"main", "higher_is_better", "splits": {split: Metrics as dict}}
    selection: Mapping[str, Any]  # {"split": "val", "metric", "best_epoch", "best_value"}
    cost: Mapping[str, Any]  # params per component now; FLOPs/latency/memory from vlbench.cost
    training: Mapping[str, Any]  # {"epochs", "steps", "wall_s", "curve": [...]}
    dataset: Mapping[str, Any]  # name, split sizes, n_queries/n_gallery, provenance
    environment: Mapping[str, Any]  # hardware/software fingerprint, git commit
    seed: int
    started_at: str  # ISO 8601 UTC
    finished_at: str


ResultRecordDict = dict[str, Any]


@dataclass(frozen=True)
class RunContext:
    """Where a finished run's files are, handed to observers beside its record."""

    suite: str
    run_id: str
    record_path: Path  # the record file, already written
    run_dir: Path | None  # <runs-dir>/<suite>/<run_id>/ for TensorBoard and traces; None: no runs folder
    replayed: bool = False  # True: written by an earlier process that stopped before its observers ran
