"""Every vlbench hook: the plugin API.

A plugin is a module (or object) with functions decorated ``@vlbench.hookimpl`` whose names
match the specs below, declared in the ``vlbench`` entry-point group of its distribution::

    [project.entry-points.vlbench]
    my_encoders = "my_package.encoders"

Registration hooks are called once per process, when the PluginHost loads, with a
``register`` callback. Register cheap specs whose ``factory`` builds the component only when
a run needs it: never build a model, load weights or read a dataset inside a registration
hook. The host fills in ``plugin``, ``distribution`` and ``version`` on every spec, refuses a
name that another plugin already registered for the same kind (both owners are named) and
isolates a plugin whose hook raises.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # importing the types pulls in torch; `import vlbench` should stay cheap
    from collections.abc import Callable
    from pathlib import Path

    from vlbench.objectives import ObjectiveSpec
    from vlbench.types.runs import ResultRecordDict, RunContext
    from vlbench.types.specs import ComponentKind, Register, VisionEncoderSpec

hookspec = pluggy.HookspecMarker("vlbench")
hookimpl = pluggy.HookimplMarker("vlbench")


@hookspec
def vlbench_register_vision_encoders(register: Register) -> None:
    """Register vision encoders: call ``register(VisionEncoderSpec(...))`` once per name.

    Called once when the host loads. The spec's factory is called as
    ``factory(image_size=(H, W), pretrained=bool, **options)`` and returns a
    :class:`vlbench.types.VisionEncoder` whose ``forward(images)`` gives an
    :class:`~vlbench.types.EncoderOutput` and whose ``info`` is a
    :class:`~vlbench.types.VisionInfo`. ``pretrained=True`` must load weights from a local
    file or an existing cache, or raise with a clear message; it must never require a network.
    """


@hookspec
def vlbench_register_text_encoders(register: Register) -> None:
    """Register text encoders: call ``register(TextEncoderSpec(...))`` once per name.

    Called once when the host loads. The factory is called as
    ``factory(pretrained=bool, **options)`` and returns a :class:`vlbench.types.TextEncoder`
    that owns its tokenizer: ``tokenize(list[str]) -> TokenizedText`` padded to
    ``info.max_length``, and ``forward(TokenizedText) -> EncoderOutput`` whose pooled output
    does not depend on padding.
    """


@hookspec
def vlbench_register_fusions(register: Register) -> None:
    """Register fusion strategies: call ``register(FusionSpec(...))`` once per name.

    Called once when the host loads. The factory is called as
    ``factory(vision=VisionInfo, text=TextInfo | None, num_classes=int | None, **options)``
    and returns an ``nn.Module`` that follows the protocol of every objective it declares
    (see :mod:`vlbench.objectives`). ``text`` is None when the spec says ``uses_text=False``.
    """


@hookspec
def vlbench_register_tasks(register: Register) -> None:
    """Register tasks: call ``register(TaskSpec(...))`` once per name.

    Called once when the host loads. ``factory(**options)`` returns a
    :class:`vlbench.types.Task`: its objective, the sample fields it requires, its loss,
    ``evaluate(model, split, loader) -> Metrics`` with chance levels, and its main metric.
    """


@hookspec
def vlbench_register_datasets(register: Register) -> None:
    """Register datasets: call ``register(DatasetSpec(...))`` once per name.

    Called once when the host loads. ``factory(cache_dir=Path, seed=int, **options)`` returns
    a :class:`vlbench.types.Dataset` with train, val and test splits providing the fields
    the spec declares. Generators must be deterministic by seed; loaders read a local
    ``root`` option and never download.
    """


@hookspec
def vlbench_register_objectives(register: Callable[[ObjectiveSpec], None]) -> None:
    """Register objectives: call ``register(ObjectiveSpec(...))`` once per new objective name.

    Called once when the host loads, before any component registration. The built-in
    ``embedding``, ``classification`` and ``generation`` (:mod:`vlbench.objectives`) are always
    there; a name already taken is refused. The spec states what a fusion implements, what a
    task may call on the model and how cost is measured (``fuse``, ``synthetic_loss``,
    ``extra_cost``); fusions then declare it in ``FusionSpec.objectives`` and tasks in
    ``TaskSpec.objective``.
    """


@hookspec
def vlbench_register_component_kinds(register: Callable[[ComponentKind], None]) -> None:
    """Register component kinds: call ``register(ComponentKind(...))`` once per new kind.

    Called once when the host loads, before component registration. The kind names its spec
    class, its suite axis and its ``build(spec, choice, parts, inputs) -> nn.Module`` when it
    is part of the model; its components are registered with ``vlbench_register_components``.
    The built-in kinds (:mod:`vlbench.kinds`) cannot be replaced.
    """


@hookspec
def vlbench_register_components(register: Register) -> None:
    """Register components of any kind, by spec class: ``register(MySpec(...))``.

    Called once when the host loads, after the kinds are known. The spec's class picks the kind
    (the ``spec_type`` of a registered :class:`~vlbench.types.ComponentKind`); this is how specs
    of a kind a plugin adds are registered. Built-in kinds keep their own hooks.
    """


@hookspec(firstresult=True)
def vlbench_resolve_vision_encoder(name: str) -> VisionEncoderSpec | None:
    """Resolve an open vision-encoder name that no plugin registered, e.g. ``"timm:resnet18"``.

    Called when a suite names a vision encoder that is not in the registry. Return a spec for
    ``name`` if this plugin understands it, else None. The first non-None result wins.
    """


@hookspec
def vlbench_run_finished(record: ResultRecordDict, runs_dir: Path | None, context: RunContext) -> None:
    """Observe a finished run (successful or failed): log it to TensorBoard, W&B, MLflow, ...

    Called after the record is written, with its JSON-ready dict; ``runs_dir`` is the runs
    folder (``vlbench run --runs-dir``, default ``./runs``) or None when there is none (``--runs-dir ""``,
    the Python API's default); ``context`` says where this run's files are
    (``context.run_dir`` = ``<runs_dir>/<suite>/<run_id>``, ``context.record_path``) and whether
    the record is replayed from an earlier process. An implementation may take any subset of
    these arguments. Every implementation is called; an exception in one is reported and does
    not fail the run. Return nothing.
    """
