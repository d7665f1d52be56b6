"""A suite file's tables checked one by one: known keys, typed values, the [suite] and [train]
settings, and each axis entry resolved to its registered component with its options filled in.

The first problem raises a SuiteError naming the file, the key path and the fix. Multiplying
the checked axes into runs, and the checks that need a whole run, are :mod:`vlbench.suite.runs`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from vlbench.errors import SuiteError, UserError
from vlbench.manager import PluginHost
from vlbench.registry import did_you_mean
from vlbench.results import non_finite
from vlbench.suite.keys import ALIASES, SUITE_KEYS, TOP_LEVEL, TRAIN_KEYS
from vlbench.types.specs import ComponentKind, ComponentSpec, Kind, VisionEncoderSpec


class AxisEntry(NamedTuple):
    """One validated axis entry."""

    name: str
    spec: ComponentSpec
    options: dict[str, Any]  # the common keys (pretrained, image_size, ...) and the component's options
    key: str  # where it stands in the file, e.g. "vision[2]", for error messages


class CheckedSuite(NamedTuple):
    """A suite file's values, each checked, before its axes are multiplied into runs."""

    name: str
    description: str
    device: str
    seeds: tuple[int, ...]
    data_seed: int
    train: dict[str, Any]
    axes: dict[Kind, list[AxisEntry | None]]  # kind -> its entries; [None] where the suite has none
    hflip_asked: bool  # [train] sets hflip = true explicitly (not the default)


class SuiteValidator:
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

    def suite(self, data: dict[str, Any]) -> CheckedSuite:
        axes = {kind.axis: kind for kind in self.host.kinds.values() if kind.axis}
        self.check_keys(data, dict.fromkeys([*TOP_LEVEL, *axes]), "")
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

        defaults = self.table(data.get("defaults", {}), "defaults")
        self.check_keys(defaults, dict.fromkeys(axes), "defaults")
        entries: dict[Kind, list[AxisEntry | None]] = {}
        for axis, kind in axes.items():
            entries[kind.name] = [*self.axis(axis, kind, data, defaults.get(axis, {}))] or [None]
        return CheckedSuite(
            name=meta["name"],
            description=meta["description"],
            device=meta["device"],
            seeds=seeds,
            data_seed=meta["data_seed"],
            train=train,
            axes=entries,
            hflip_asked=bool(train_given.get("hflip", False)),
        )

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

    def axis(self, key: str, kind: ComponentKind, data: dict[str, Any], defaults: Any) -> list[AxisEntry]:
        """The entries of the suite's array ``key`` (``kind.axis``), each merged over ``[defaults.<key>]``."""
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

    def entry(self, kind: ComponentKind, entry: dict[str, Any], key: str) -> AxisEntry:
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
            own = spec.default_image_size if isinstance(spec, VisionEncoderSpec) else ()  # none: the size must be given
            common["image_size"] = self.image_size(common["image_size"] or list(own), f"{key}.image_size")
        if common.get("weights") and not Path(common["weights"]).expanduser().is_file():
            raise self.fail(
                f"{key}.weights", f"file {common['weights']!r} does not exist (paths are relative to the working directory)."
            )
        if "pretrained" in common and "pretrained" not in entry and hasattr(spec, "pretrained_by_default"):
            common["pretrained"] = spec.pretrained_by_default
        options = self.options(entry.get("options", {}), spec, f"{key}.options")
        return AxisEntry(name, spec, {**common, **options}, key)

    def image_size(self, value: list[Any], key: str) -> list[int]:
        if len(value) != 2 or not all(isinstance(v, int) and v >= 16 for v in value):
            raise self.fail(key, f"expected [H, W] with two integers >= 16, got {value}.")
        return value


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
