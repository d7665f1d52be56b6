"""Suites: TOML -> validated frozen dataclasses -> list of RunSpec.

Everything is checked before any model is built; the first problem raises a SuiteError
naming the file, the key path and the fix. A suite looks like::

    [suite]
    name = "quickstart"
    seed = 0

    [train]
    epochs = 3
    batch_size = 32

    [defaults.vision]              # merged into every [[vision]] entry
    image_size = [128, 64]

    [[tasks]]
    name = "person_search"
    dataset = "synthetic_pedestrians"
    dataset_options = { identities = [200, 50, 50] }

    [[vision]]
    name = "mobilenetv3_small_100"

    [[text]]
    name = "clip_text"
    options = { width = 256, layers = 4, heads = 4 }

    [[fusions]]
    name = "contrastive"

Runs are the product vision x text x fusions x tasks x seeds. Axis entries may also be bare
names: ``vision = ["deit_tiny_patch16_224", "convnext_atto"]``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from vlbench.errors import SuiteError, UserError
from vlbench.manager import PluginHost
from vlbench.registry import did_you_mean
from vlbench.results import non_finite
from vlbench.types import ComponentChoice, ComponentKind, ComponentSpec, FusionSpec, Kind, RunSpec, TaskSpec

# key -> (default, help). Types come from the defaults.
SUITE_KEYS: dict[str, tuple[Any, str]] = {
    "name": ("", "the suite's name; results go to <results-dir>/<name>/"),
    "description": ("", "free text"),
    "seed": (0, "seed of every run (ignored when seeds is given)"),
    "seeds": ([], "several seeds: each run is repeated once per seed"),
    "data_seed": (0, "seed of dataset generation and splits, shared by every run"),
    "device": ("auto", '"auto" (cuda when available), "cpu" or "cuda"'),
}
TRAIN_KEYS: dict[str, tuple[Any, str]] = {
    "epochs": (10, "passes over the train split"),
    "batch_size": (64, "training batch size"),
    "lr": (3e-4, "peak learning rate of the new modules (fusion, heads)"),
    "encoder_lr": (-1.0, "peak learning rate of the encoders; -1 = same as lr"),
    "weight_decay": (0.05, "AdamW weight decay of the new modules"),
    "encoder_weight_decay": (-1.0, "AdamW weight decay of the encoders; -1 = same as weight_decay"),
    "warmup_fraction": (0.1, "linear warm-up over this fraction of all steps, then cosine to 0"),
    "grad_clip": (1.0, "max global grad norm; 0 = off"),
    "amp": ("auto", '"auto" (bf16 on GPU, off on CPU), "bf16", "fp16" or "off"'),
    "channels_last": (False, "images in channels_last memory format"),
    "hflip": (True, "random horizontal flip of train images; always off for a dataset that declares flips unsafe"),
    "early_stopping_patience": (0, "stop after this many epochs without val improvement; 0 = off"),
    "max_steps_per_epoch": (0, "cap on steps per epoch; 0 = the whole train split"),
    "eval_batch_size": (128, "batch size for encoding val/test splits"),
    "eval_train_split": (
        False,
        "also score the selected checkpoint on the train split (no augmentation), e.g. for a train-vs-val gap",
    ),
    "num_workers": (0, "DataLoader worker processes"),
    "cost_batch_sizes": ([1, 32], "batch sizes of the throughput measurement (images/s)"),
    "cost_budget_s": (1.0, "seconds of timing per latency/throughput figure, after warm-up"),
}
# Names users carry over from other tools, for "did you mean" where spelling is no help.
ALIASES = {
    "learning_rate": "lr",
    "wd": "weight_decay",
    "bs": "batch_size",
    "batch": "batch_size",
    "epoch": "epochs",
    "img_size": "image_size",
    "input_size": "image_size",
    "dataset_name": "dataset",
}
TOP_LEVEL = {
    "suite",
    "train",
    "defaults",
    "executor",
}  # and every kind's axis (PluginHost.kinds); executor: read by vlbench.executors


class _Entry(NamedTuple):
    """One validated axis entry."""

    name: str
    spec: ComponentSpec
    options: dict[str, Any]  # the common keys (pretrained, image_size, ...) and the component's options
    key: str  # where it stands in the file, e.g. "vision[2]", for error messages


@dataclass(frozen=True)
class Suite:
    path: Path
    name: str
    description: str
    device: str
    seeds: tuple[int, ...]
    train: Mapping[str, Any]
    runs: tuple[RunSpec, ...]


def load_suite(path: str | Path, host: PluginHost) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"{path}: no such suite file. Suites live in suites/*.toml; check the path.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SuiteError(f"{path}: not valid TOML ({exc}). Fix the syntax at that position.") from None
    return _Validator(path, host).suite(data)


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
    choice = lambda c: None if c is None else {"name": c.name, "options": dict(c.options)}  # noqa: E731
    config = {kind: None for kind, spec in kinds.items() if spec.null_in_config}
    config |= {kind: choice(c) for kind, c in run.components.items() if c is not None or kind in config}
    return {**config, "train": dict(run.train), "seed": run.seed, "data_seed": run.data_seed}


class _Validator:
    def __init__(self, path: Path, host: PluginHost):
        self.path = path
        self.host = host

    def fail(self, key: str, message: str) -> SuiteError:
        return SuiteError(f"{self.path}: {key}: {message}")

    # -------------------------------------------------------------- generic checks

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(key, f"expected a table, got {_describe(value)}.")
        return value

    def check_keys(self, given: Mapping[str, Any], allowed: Mapping[str, Any], key: str) -> None:
        for name in given:
            if name not in allowed:
                hint = f" Did you mean {ALIASES[name]!r}?" if ALIASES.get(name) in allowed else did_you_mean(name, list(allowed))
                raise self.fail(
                    f"{key}.{name}" if key else name, f"unknown key.{hint} Allowed here: {', '.join(sorted(allowed))}."
                )

    def typed(self, value: Any, default: Any, key: str) -> Any:
        """``value`` checked against the type of ``default`` (None: anything)."""
        for path, number in non_finite(value, key)[:1]:  # TOML has nan and inf; no record could hold them
            raise self.fail(path, f"expected a finite number, got {number}.")
        if default is None or _same_type(value, default):
            return list(value) if isinstance(value, (list, tuple)) else value
        raise self.fail(key, f"expected {_describe_type(default)}, got {_describe(value)} (default: {json.dumps(default)}).")

    def options(self, given: Any, spec: ComponentSpec, key: str) -> dict[str, Any]:
        given = self.table(given, key)
        self.check_keys(given, spec.options, key)
        options = {name: self.typed(given.get(name, default), default, f"{key}.{name}") for name, default in spec.options.items()}
        if spec.check_options is not None:
            try:
                spec.check_options(options)
            except (ValueError, UserError) as exc:
                raise self.fail(key, f"{spec.name!r}: {exc}") from None
        return options

    # -------------------------------------------------------------- the suite

    def suite(self, data: dict[str, Any]) -> Suite:
        self.axes = {kind.axis: kind for kind in self.host.kinds.values() if kind.axis}
        self.check_keys(data, dict.fromkeys([*TOP_LEVEL, *self.axes]), "")
        meta = self.table(data.get("suite", {}), "suite")
        self.check_keys(meta, SUITE_KEYS, "suite")
        meta = {k: self.typed(meta.get(k, d), d, f"suite.{k}") for k, (d, _) in SUITE_KEYS.items()}
        # Starting with a letter or digit keeps "." and ".." from naming a folder outside the results.
        if not meta["name"] or not meta["name"][0].isalnum() or not all(c.isalnum() or c in "-_." for c in meta["name"]):
            raise self.fail(
                "suite.name",
                'required: a name of letters, digits, "-", "_" or ".", starting with a letter or digit, '
                'e.g. name = "quickstart".',
            )
        if meta["device"] not in ("auto", "cpu", "cuda"):
            raise self.fail("suite.device", f'must be "auto", "cpu" or "cuda", got {meta["device"]!r}.')
        seeds = tuple(meta["seeds"]) or (meta["seed"],)
        if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**32 for s in seeds):
            raise self.fail(
                "suite.seeds" if meta["seeds"] else "suite.seed", f"seeds are integers in [0, 2**32), got {list(seeds)}."
            )
        if not 0 <= meta["data_seed"] < 2**32:
            raise self.fail("suite.data_seed", f"must be an integer in [0, 2**32), got {meta['data_seed']}.")

        train_given = self.table(data.get("train", {}), "train")
        self.check_keys(train_given, TRAIN_KEYS, "train")
        train = {k: self.typed(train_given.get(k, d), d, f"train.{k}") for k, (d, _) in TRAIN_KEYS.items()}
        self.check_train(train)
        self.hflip_asked = bool(train_given.get("hflip", False))  # an explicit true, not the default

        defaults = self.table(data.get("defaults", {}), "defaults")
        self.check_keys(defaults, dict.fromkeys(self.axes), "defaults")
        axes = {kind.name: self.axis(kind, data, defaults.get(axis, {})) or [None] for axis, kind in self.axes.items()}

        runs = []
        for *entries, seed in itertools.product(*axes.values(), seeds):
            runs.append(self.run(meta["name"], dict(zip(axes, entries, strict=True)), train, seed, meta["data_seed"]))
        unique = {run.run_id: run for run in runs}
        return Suite(self.path, meta["name"], meta["description"], meta["device"], seeds, train, tuple(unique.values()))

    def check_train(self, train: dict[str, Any]) -> None:
        for key in ("epochs", "batch_size", "eval_batch_size"):
            if train[key] < 1:
                raise self.fail(f"train.{key}", f"must be at least 1, got {train[key]}.")
        for key in ("weight_decay", "grad_clip", "early_stopping_patience", "max_steps_per_epoch", "num_workers"):
            if train[key] < 0:
                raise self.fail(f"train.{key}", f"must be at least 0 ({TRAIN_KEYS[key][1]}), got {train[key]}.")
        for key in ("lr", "cost_budget_s"):
            if train[key] <= 0:
                raise self.fail(f"train.{key}", f"must be positive, got {train[key]}.")
        sizes = train["cost_batch_sizes"]
        if not sizes or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes):
            raise self.fail(
                "train.cost_batch_sizes", f"expected a non-empty array of integers >= 1, e.g. [1, 32], got {json.dumps(sizes)}."
            )
        if not 0 <= train["warmup_fraction"] < 1:
            raise self.fail("train.warmup_fraction", f"must be in [0, 1), got {train['warmup_fraction']}.")
        if train["amp"] not in ("auto", "bf16", "fp16", "off"):
            raise self.fail("train.amp", f'must be "auto", "bf16", "fp16" or "off", got {train["amp"]!r}.')
        if train["encoder_lr"] < 0:
            train["encoder_lr"] = train["lr"]
        if train["encoder_weight_decay"] < 0:
            train["encoder_weight_decay"] = train["weight_decay"]

    # -------------------------------------------------------------- axes

    def axis(self, kind: ComponentKind, data: dict[str, Any], defaults: Any) -> list[_Entry]:
        key = kind.axis
        entries = data.get(key, [])
        if not isinstance(entries, list):
            raise self.fail(key, f"expected an array of tables ([[{key}]]) or of names, got {_describe(entries)}.")
        if not entries and kind.axis_required:
            raise self.fail(key, f"the suite needs at least one entry: add a [[{key}]] table with a name.")
        defaults = self.table(defaults, f"defaults.{key}")
        allowed = {"name": None, "options": None, **kind.common_options}
        self.check_keys(defaults, allowed, f"defaults.{key}")
        return [
            self.entry(kind, {**defaults, **self.table(_as_entry(raw), f"{key}[{i}]")}, f"{key}[{i}]")
            for i, raw in enumerate(entries)
        ]

    def entry(self, kind: ComponentKind, entry: dict[str, Any], key: str) -> _Entry:
        self.check_keys(entry, {"name": None, "options": None, **kind.common_options}, key)
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise self.fail(f"{key}.name", f"required: the registered name of a {kind.name} component (see `vlbench plugins`).")
        try:
            spec = self.host.get(kind.name, name)
        except SuiteError:
            raise
        except Exception as exc:  # UserError from the registry or a resolver
            raise self.fail(f"{key}.name", str(exc)) from None
        common = {k: self.typed(entry.get(k, d), d, f"{key}.{k}") for k, (d, _) in kind.common_options.items()}
        if "image_size" in common:
            common["image_size"] = self.image_size(common["image_size"] or list(spec.default_image_size), f"{key}.image_size")
        if common.get("weights") and not Path(common["weights"]).expanduser().is_file():
            raise self.fail(
                f"{key}.weights", f"file {common['weights']!r} does not exist (paths are relative to the working directory)."
            )
        if "pretrained" in common and "pretrained" not in entry and hasattr(spec, "pretrained_by_default"):
            common["pretrained"] = spec.pretrained_by_default
        options = self.options(entry.get("options", {}), spec, f"{key}.options")
        return _Entry(name, spec, {**common, **options}, key)

    def image_size(self, value: list, key: str) -> list[int]:
        if len(value) != 2 or not all(isinstance(v, int) and v >= 16 for v in value):
            raise self.fail(key, f"expected [H, W] with two integers >= 16, got {value}.")
        return value

    # -------------------------------------------------------------- runs

    def run(self, suite: str, entries: dict[Kind, _Entry | None], train, seed, data_seed) -> RunSpec:
        fusion, task, text = entries.get("fusion"), entries["task"], entries.get("text")
        task_spec, task_opts = task.spec, dict(task.options)
        assert isinstance(task_spec, TaskSpec)
        self.check_objective(fusion, task)
        uses_text = fusion is not None and fusion.spec.uses_text
        if uses_text and text is None:
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
        if not dataless:
            try:
                dataset_spec = self.host.get("dataset", dataset_name)
            except Exception as exc:
                raise self.fail(f"{task.key}.dataset", str(exc)) from None
            missing = task_spec.required_fields - dataset_spec.provides
            if missing:
                raise self.fail(
                    f"{task.key}.dataset",
                    f"dataset {dataset_name!r} does not provide {sorted(missing)}, which task {task.name!r} needs.",
                )
            dataset = ComponentChoice(dataset_name, self.options(dataset_given, dataset_spec, f"{task.key}.dataset_options"))
        train = dict(train)
        if not dataless and not getattr(dataset_spec, "hflip_safe", True):
            # Flip safety is the dataset's contract: the default flip turns off for it (the
            # resolved config says hflip = false), an explicit request is refused.
            if self.hflip_asked:
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
        draft = RunSpec(suite=suite, components=choices, train=dict(train), seed=seed, data_seed=data_seed, run_id="")
        return RunSpec(
            suite=suite,
            components=choices,
            train=dict(train),
            seed=seed,
            data_seed=data_seed,
            run_id=run_id(run_config(draft, self.host.kinds)),
        )

    def fusion_inputs(self, fusion: _Entry | None, entries: dict[Kind, _Entry | None]) -> dict[Kind, _Entry | None]:
        """Kinds built for the fusion only (``fusion_input``): required by a fusion that needs them, dropped otherwise."""
        needs = getattr(fusion.spec, "needs", frozenset()) if fusion is not None else frozenset()
        entries = dict(entries)
        for name, kind in self.host.kinds.items():
            if name in needs and entries.get(name) is None:
                axis = f"[[{kind.axis}]]" if kind.axis else f"a {name} component"
                raise self.fail(
                    f"{fusion.key}.name",
                    f"fusion {fusion.name!r} needs a {name} component: add a {axis} entry "
                    f"(`vlbench plugins` lists the {name} components).",
                )
            if kind.fusion_input and name not in needs:
                entries[name] = None  # the fusion does not read it: the run builds none
        return entries

    def check_run(self, entries: dict[Kind, _Entry | None], choices: dict[Kind, ComponentChoice | None]) -> None:
        """Each chosen component's ``check_run`` against the run's others, before anything is built."""
        specs = {kind: entry.spec for kind, entry in entries.items() if entry is not None}
        specs |= {kind: self.host.get(kind, choices[kind].name) for kind in ("task", "dataset") if choices.get(kind) is not None}
        components = {kind: (spec, choices[kind].options) for kind, spec in specs.items() if choices.get(kind) is not None}
        for kind, (spec, _) in components.items():
            if spec.check_run is None:
                continue
            try:
                spec.check_run(components)
            except (ValueError, UserError) as exc:
                entry = entries.get(kind)
                raise self.fail(entry.key if entry is not None else kind, f"{spec.name!r}: {exc}") from None

    def check_objective(self, fusion: _Entry | None, task: _Entry) -> None:
        """The fusion serves the task's objective; a cost-only task (no objective) takes no fusion."""
        objective = task.spec.objective
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
        able = [n for n, s in self.host.specs("fusion").items() if objective in s.objectives]
        if fusion is None:
            raise self.fail(
                "fusions",
                f"task {task.name!r} needs a fusion serving the {objective!r} objective: add a [[fusions]] "
                f"entry. Fusions that can serve it: {', '.join(able) or 'none installed'}.",
            )
        assert isinstance(fusion.spec, FusionSpec)
        if objective not in fusion.spec.objectives:
            raise self.fail(
                f"{fusion.key}.name",
                f"fusion {fusion.name!r} provides {sorted(fusion.spec.objectives)} but task {task.name!r} "
                f"needs the {objective!r} objective. Fusions that can serve it: {', '.join(able) or 'none installed'}.",
            )


def _as_entry(raw: Any) -> Any:
    return {"name": raw} if isinstance(raw, str) else raw


def _same_type(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    if isinstance(default, (list, tuple)):
        return isinstance(value, (list, tuple))
    return isinstance(value, type(default))


def _describe_type(default: Any) -> str:
    if isinstance(default, bool):
        return "true or false"
    return {int: "an integer", float: "a number", str: "a string", list: "an array", tuple: "an array", dict: "a table"}.get(
        type(default), type(default).__name__
    )


def _describe(value: Any) -> str:
    return f"{_describe_type(value)} ({json.dumps(value, default=str)[:60]})"
