"""A resolved run (:class:`RunSpec`: one :class:`ComponentChoice` per kind), the record it
writes (:class:`ResultRecord`) and where its files are for observers (:class:`RunContext`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vlbench.types.specs import Kind


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
