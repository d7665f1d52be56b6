"""What plugins register: a :class:`ComponentSpec` per component (cheap, frozen, with a lazy
``factory``), one subclass per built-in kind, and :class:`ComponentKind` for a kind of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import nn

from vlbench.types.datasets import Field
from vlbench.types.tasks import Objective

if TYPE_CHECKING:
    from vlbench.pretrained import WeightsSource

# A component kind's name: the built-in "vision", "text", "fusion", "task", "dataset", or one a
# plugin registers (:class:`ComponentKind`, ``vlbench_register_component_kinds``).
Kind = str


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
