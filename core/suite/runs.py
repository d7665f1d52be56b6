"""A checked suite's axes multiplied into runs (vision x text x fusions x tasks x seeds), each
checked as a whole (the fusion serves the task's objective, the dataset provides the task's
fields, every component's ``check_run``) and given its id.

A run's id hashes its config (:func:`run_config`): records, resumption and the leaderboard
key on it, so what goes into the config never changes for an existing run.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Mapping
from typing import Any, TypeVar

from vlbench.errors import UserError
from vlbench.suite.validation import AxisEntry, CheckedSuite, SuiteValidator
from vlbench.types.runs import ComponentChoice, RunSpec
from vlbench.types.specs import ComponentKind, ComponentSpec, DatasetSpec, FusionSpec, Kind, TaskSpec

SpecType = TypeVar("SpecType", bound=ComponentSpec)


def run_id(config: Mapping[str, Any]) -> str:
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def run_config(run: RunSpec, kinds: Mapping[Kind, ComponentKind] | None = None) -> dict[str, Any]:
    """The JSON form of a run; everything but the suite name and id goes into the id.

    Kinds with ``null_in_config`` appear as null when the run has none, the others only when
    chosen, so a kind a plugin adds leaves every existing run id as it was.
    """
    from vlbench import kinds as builtin

    kinds = kinds or {kind.name: kind for kind in builtin.BUILTIN}
    config: dict[str, dict[str, Any] | None] = {kind: None for kind, spec in kinds.items() if spec.null_in_config}
    config |= {kind: _choice(c) for kind, c in run.components.items() if c is not None or kind in config}
    return {**config, "train": dict(run.train), "seed": run.seed, "data_seed": run.data_seed}


def _choice(choice: ComponentChoice | None) -> dict[str, Any] | None:
    return None if choice is None else {"name": choice.name, "options": dict(choice.options)}


def expand(checked: CheckedSuite, validator: SuiteValidator) -> tuple[RunSpec, ...]:
    """Every run of the suite, in axis order, once each (entries that resolve alike make one run)."""
    builder = _RunBuilder(checked, validator)
    combinations = itertools.product(itertools.product(*checked.axes.values()), checked.seeds)  # seeds vary fastest
    runs = [builder.run(dict(zip(checked.axes, entries, strict=True)), seed) for entries, seed in combinations]
    return tuple({run.run_id: run for run in runs}.values())


def _as(spec: ComponentSpec, spec_type: type[SpecType]) -> SpecType:
    """``spec`` as its kind's spec type: the PluginHost registers a kind's specs only when they have it."""
    assert isinstance(spec, spec_type), f"{spec.name!r} is a {type(spec).__name__}, not a {spec_type.__name__}"
    return spec


class _RunBuilder:
    def __init__(self, checked: CheckedSuite, validator: SuiteValidator):
        self.suite = checked
        self.host = validator.host
        self.fail = validator.fail
        self.options = validator.options

    def run(self, entries: dict[Kind, AxisEntry | None], seed: int) -> RunSpec:
        fusion, task, text = entries.get("fusion"), entries["task"], entries.get("text")
        assert task is not None, "the tasks axis is required (vlbench.kinds.TASK), so every run has a task"
        task_spec, task_opts = _as(task.spec, TaskSpec), dict(task.options)
        self.check_objective(fusion, task)
        uses_text = fusion is not None and _as(fusion.spec, FusionSpec).uses_text
        if fusion is not None and uses_text and text is None:
            raise self.fail("text", f"fusion {fusion.name!r} needs a text encoder: add a [[text]] entry.")
        dataset_name = task_opts.pop("dataset") or task_spec.default_dataset
        dataset_given = task_opts.pop("dataset_options")
        # A cost-only task that reads no sample field (throughput) runs without a dataset.
        dataless = not dataset_name and not task_spec.measures_quality and not task_spec.required_fields
        if not dataset_name and not dataless:
            raise self.fail(f"{task.key}.dataset", f'task {task.name!r} has no default dataset: set dataset = "...".')
        if dataless and dataset_given:
            raise self.fail(
                f"{task.key}.dataset_options", f"task {task.name!r} uses no dataset: remove dataset_options or name a dataset."
            )
        dataset = None
        dataset_spec: DatasetSpec | None = None
        if not dataless:
            try:
                found = self.host.get("dataset", dataset_name)
            except Exception as exc:
                raise self.fail(f"{task.key}.dataset", str(exc)) from None
            dataset_spec = _as(found, DatasetSpec)
            missing = task_spec.required_fields - dataset_spec.provides
            if missing:
                raise self.fail(
                    f"{task.key}.dataset",
                    f"dataset {dataset_name!r} does not provide {sorted(missing)}, which task {task.name!r} needs.",
                )
            dataset = ComponentChoice(dataset_name, self.options(dataset_given, dataset_spec, f"{task.key}.dataset_options"))
        train = dict(self.suite.train)
        if dataset_spec is not None and not dataset_spec.hflip_safe:
            # Flip safety is the dataset's contract: the default flip turns off for it (the
            # resolved config says hflip = false), an explicit request is refused.
            if self.suite.hflip_asked:
                raise self.fail(
                    "train.hflip",
                    f"dataset {dataset_name!r} declares that a horizontal flip can contradict its "
                    "captions (they name left and right), so hflip = true would train on mislabelled pairs. Remove "
                    "hflip from [train] (it defaults to off for this dataset) or set hflip = false.",
                )
            train["hflip"] = False
        entries = self.fusion_inputs(fusion, entries)
        choices: dict[Kind, ComponentChoice | None] = {
            kind: None if entry is None else ComponentChoice(entry.name, entry.options) for kind, entry in entries.items()
        }
        if text is not None and not uses_text:
            choices["text"] = None  # the fusion reads no text: the run builds no text encoder
        choices["task"] = ComponentChoice(task.name, task_opts)
        choices["dataset"] = dataset
        self.check_run(entries, choices)
        # Build order; a kind the run has none of stays out unless the first record schema had it (null_in_config),
        # so a kind a plugin adds leaves the labels and ids of runs without it as they were.
        choices = {
            kind: choices[kind]
            for kind, spec in self.host.kinds.items()
            if kind in choices and (choices[kind] is not None or spec.null_in_config)
        }
        name, data_seed = self.suite.name, self.suite.data_seed
        draft = RunSpec(suite=name, components=choices, train=dict(train), seed=seed, data_seed=data_seed, run_id="")
        return RunSpec(
            suite=name,
            components=choices,
            train=dict(train),
            seed=seed,
            data_seed=data_seed,
            run_id=run_id(run_config(draft, self.host.kinds)),
        )

    def fusion_inputs(self, fusion: AxisEntry | None, entries: dict[Kind, AxisEntry | None]) -> dict[Kind, AxisEntry | None]:
        """Kinds built for the fusion only (``fusion_input``): required by a fusion that needs them, dropped otherwise."""
        needs = _as(fusion.spec, FusionSpec).needs if fusion is not None else frozenset[Kind]()
        entries = dict(entries)
        for name, kind in self.host.kinds.items():
            if fusion is not None and name in needs and entries.get(name) is None:
                axis = f"[[{kind.axis}]]" if kind.axis else f"a {name} component"
                raise self.fail(
                    f"{fusion.key}.name",
                    f"fusion {fusion.name!r} needs a {name} component: add a {axis} entry "
                    f"(`vlbench plugins` lists the {name} components).",
                )
            if kind.fusion_input and name not in needs:
                entries[name] = None  # the fusion does not read it: the run builds none
        return entries

    def check_run(self, entries: dict[Kind, AxisEntry | None], choices: dict[Kind, ComponentChoice | None]) -> None:
        """Each chosen component's ``check_run`` against the run's others, before anything is built."""
        specs = {kind: entry.spec for kind, entry in entries.items() if entry is not None}
        specs |= {
            kind: self.host.get(kind, choice.name) for kind in ("task", "dataset") if (choice := choices.get(kind)) is not None
        }
        components = {kind: (spec, choice.options) for kind, spec in specs.items() if (choice := choices.get(kind)) is not None}
        for kind, (spec, _) in components.items():
            if spec.check_run is None:
                continue
            try:
                spec.check_run(components)
            except (ValueError, UserError) as exc:
                entry = entries.get(kind)
                raise self.fail(entry.key if entry is not None else kind, f"{spec.name!r}: {exc}") from None

    def check_objective(self, fusion: AxisEntry | None, task: AxisEntry) -> None:
        """The fusion serves the task's objective; a cost-only task (no objective) takes no fusion."""
        objective = _as(task.spec, TaskSpec).objective
        if objective is None:
            if fusion is not None:
                raise self.fail(
                    f"{fusion.key}.name",
                    f"task {task.name!r} measures encoders only (no objective, no quality): "
                    f"remove the [[fusions]] entries, or run it in a suite of its own.",
                )
            return
        try:
            self.host.objective(objective)
        except Exception as exc:
            raise self.fail(f"{task.key}.name", f"task {task.name!r}: {exc}") from None
        able = [n for n, s in self.host.specs("fusion").items() if objective in _as(s, FusionSpec).objectives]
        if fusion is None:
            raise self.fail(
                "fusions",
                f"task {task.name!r} needs a fusion serving the {objective!r} objective: add a [[fusions]] "
                f"entry. Fusions that can serve it: {', '.join(able) or 'none installed'}.",
            )
        fusion_spec = _as(fusion.spec, FusionSpec)
        if objective not in fusion_spec.objectives:
            raise self.fail(
                f"{fusion.key}.name",
                f"fusion {fusion.name!r} provides {sorted(fusion_spec.objectives)} but task {task.name!r} "
                f"needs the {objective!r} objective. Fusions that can serve it: {', '.join(able) or 'none installed'}.",
            )
