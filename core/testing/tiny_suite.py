"""One tiny suite through the real engine around the component under test (:func:`tiny_run`),
and which mock task or fusion can run with a given component."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from vlbench.testing.mock_tasks import MockClassificationTask, MockRetrievalTask
from vlbench.types.specs import DatasetSpec, FusionSpec

if TYPE_CHECKING:
    from vlbench.manager import PluginHost
    from vlbench.objectives import ObjectiveSpec


def mock_tasks_for_fusion(spec: FusionSpec, objectives: Mapping[str, ObjectiveSpec] | None = None) -> dict[str, str | None]:
    """Each objective the fusion declares -> the mock task that can exercise it, or None
    (``ObjectiveSpec.mock_task``; a mock task that reads captions needs a fusion with text)."""
    from vlbench import objectives as builtin

    registered = objectives if objectives is not None else builtin.BUILTIN
    out: dict[str, str | None] = {}
    for name in sorted(spec.objectives):
        objective = registered.get(name)
        usable = objective is not None and (spec.uses_text or not objective.mock_task_needs_text)
        out[name] = objective.mock_task if objective is not None and usable else None
    return out


# The mock fusion (and text encoder) that serves each built-in objective, for a task's end-to-end run.
MOCK_FUSION: dict[str, tuple[str, str | None]] = {
    "embedding": ("mock_fusion", "mock_text"),
    "classification": ("mock_fusion", "mock_text"),
    "generation": ("mock_decoder", None),
}


def mock_task_for(spec: DatasetSpec) -> str | None:
    """The mock task that can run on a dataset providing ``spec.provides``, if any."""
    for name, task in (("mock_retrieval", MockRetrievalTask), ("mock_classification", MockClassificationTask)):
        if task.required_fields <= spec.provides:
            return name
    return None


def _toml(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # bools, numbers and strings are spelled alike in JSON and TOML


def tiny_run(
    host: PluginHost,
    workdir: Path,
    *,
    vision: str = "mock_vision",
    text: str | None = "mock_text",
    fusion: str | None = "mock_fusion",
    task: str = "mock_retrieval",
    dataset: str = "mock_dataset",
    image_size: Sequence[int] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    steps: int = 2,
) -> dict[str, Any]:
    """Run one tiny suite through the real engine and return its record (status ok or error).

    ``text=None`` runs without a text encoder (for fusions with ``uses_text=False``); ``options``
    maps a kind (vision, text, fusion, task, dataset) to that component's options. Two epochs of
    ``steps`` steps, so selection on val, reloading the best state and testing all happen.
    """
    from vlbench.engine import run_suite
    from vlbench.results import read_record, record_path
    from vlbench.suite import load_suite

    options = options or {}
    vision_entry: dict[str, Any] = {"name": vision, "options": options.get("vision", {})}
    if image_size is not None:
        vision_entry["image_size"] = list(image_size)
    axes = {
        "vision": vision_entry,
        "text": {"name": text, "options": options.get("text", {})} if text else None,
        "fusions": {"name": fusion, "options": options.get("fusion", {})} if fusion else None,
        "tasks": {
            "name": task,
            "options": options.get("task", {}),
            "dataset_options": options.get("dataset", {}),
            "dataset": dataset,
        },
    }
    # Cost is measured as in every run, on a token budget: its figures are not what is tested here.
    train = {
        "epochs": 2,
        "batch_size": 8,
        "max_steps_per_epoch": steps,
        "eval_batch_size": 32,
        "lr": 1e-3,
        "hflip": False,
        "cost_batch_sizes": [1, 2],
        "cost_budget_s": 0.01,
    }
    lines = ["[suite]", 'name = "tiny"', "[train]", *(f"{key} = {_toml(value)}" for key, value in train.items())]
    for axis, entry in axes.items():
        if entry is not None:
            lines += [f"[[{axis}]]"] + [f"{key} = {_toml(value)}" for key, value in entry.items()]
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "tiny.toml"
    path.write_text("\n".join(lines) + "\n")
    suite = load_suite(path, host)
    (run,) = suite.runs
    run_suite(suite.runs, host, workdir / "results", workdir / "cache", torch.device("cpu"), warn=lambda _: None)
    return read_record(record_path(workdir / "results", run.suite, run.run_id))


def describe_failure(record: Mapping[str, Any]) -> str:
    """One message for an error record: its error and the traceback that raised it."""
    error = record["error"]
    return f"{record['label']} failed: {error['type']}: {error['message']}\n{error.get('traceback', '')}"
