"""Objectives and component kinds are registered protocols: a plugin adds one without a core edit."""

from __future__ import annotations

import re
import subprocess
import types
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

from vlbench import hookimpl
from vlbench.engine import run_suite
from vlbench.errors import SuiteError
from vlbench.manager import PluginHost
from vlbench.objectives import BUILTIN, ObjectiveSpec
from vlbench.objectives.classification import CLASSIFICATION
from vlbench.results import read_record
from vlbench.suite import load_suite
from vlbench.testing import mocks
from vlbench.types import ComponentKind, ComponentSpec, FusionSpec, TaskSpec

ROOT = Path(__file__).resolve().parents[1]

SUITE = """
[suite]
name = "kinds"
[train]
epochs = 1
batch_size = 8
max_steps_per_epoch = 1
eval_batch_size = 32
cost_batch_sizes = [1, 2]
cost_budget_s = 0.01
[[vision]]
name = "mock_vision"
[[text]]
name = "mock_text"
[[fusions]]
name = "mock_fusion"
[[tasks]]
name = "mock_classification"
"""


def test_core_has_no_objective_string_branch():
    """The project's stop hook greps the same pattern: objectives are looked up, never compared."""
    out = subprocess.run(["grep", "-rnE", r"objective ?[!=]= ?['\"]", str(ROOT / "core")], capture_output=True, text=True)
    assert out.stdout == ""


def test_builtin_objectives_each_state_their_protocol():
    assert sorted(BUILTIN) == ["classification", "embedding", "generation"]
    for spec in BUILTIN.values():
        assert spec.fusion_methods and spec.model_methods and callable(spec.fuse) and callable(spec.synthetic_loss)
    assert BUILTIN["generation"].extra_cost is not None and BUILTIN["generation"].targets is not None


# ---------------------------------------------------------------- a plugin objective

matching = types.ModuleType("matching_plugin")


class Matcher(nn.Module):
    def __init__(self, vision, text, num_classes=None):
        super().__init__()
        self.head = nn.Linear(vision.pooled_dim, 1)

    def match(self, image, text):
        return self.head(image.pooled).squeeze(-1)


@hookimpl
def _register_objectives(register):
    register(
        ObjectiveSpec(
            name="matching",
            description="a match score per image",
            fusion_methods={"match": "(image, text) -> [B]"},
            model_methods={},
            fuse=lambda model, image, text: model.fusion.match(image, text),
            synthetic_loss=lambda model, images, text: model.fusion.match(model.vision(images), None).square().mean(),
            check_fusion=CLASSIFICATION.check_fusion,
        )
    )
    register(
        ObjectiveSpec(
            name="embedding",
            description="a second owner",
            fusion_methods={},
            model_methods={},
            fuse=BUILTIN["embedding"].fuse,
            synthetic_loss=BUILTIN["embedding"].synthetic_loss,
            check_fusion=BUILTIN["embedding"].check_fusion,
        )
    )


@hookimpl
def _register_fusions(register):
    register(FusionSpec(name="matcher", factory=Matcher, objectives=frozenset({"matching"}), uses_text=False))


@hookimpl
def _register_tasks(register):
    register(
        TaskSpec(
            name="match_task",
            factory=object,
            objective="matching",
            required_fields=frozenset({"image"}),
            default_dataset="mock_dataset",
        )
    )


matching.vlbench_register_objectives = _register_objectives
matching.vlbench_register_fusions = _register_fusions
matching.vlbench_register_tasks = _register_tasks


def test_vlbench_register_objectives_adds_an_objective_and_refuses_a_taken_name(tmp_path):
    host = PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks)], load_entry_points=False)
    assert "matching" not in host.objectives
    # The plugin registers two: "embedding" is taken, so the plugin is isolated and neither is kept.
    host = PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks), ("matching", matching)], load_entry_points=False)
    assert [f.stage for f in host.failures] == ["objective registration"] and "matching" not in host.objectives
    ok = types.ModuleType("matching_ok")
    ok.vlbench_register_objectives = hookimpl(
        lambda register: _register_objectives(lambda spec: spec.name == "matching" and register(spec))
    )
    ok.vlbench_register_fusions, ok.vlbench_register_tasks = _register_fusions, _register_tasks
    host = PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks), ("matching", ok)], load_entry_points=False)
    assert host.objective("matching").plugin == "matching"
    path = tmp_path / "s.toml"
    path.write_text(SUITE.replace('"mock_fusion"', '"matcher"').replace('"mock_classification"', '"match_task"'))
    (run,) = load_suite(path, host).runs  # the fusion serves the plugin's objective
    assert run.choice("fusion").name == "matcher"
    path.write_text(SUITE.replace('"mock_classification"', '"match_task"'))
    with pytest.raises(
        SuiteError, match=r"fusions\[0\].name: fusion 'mock_fusion' provides .* needs the 'matching' objective.*matcher"
    ):
        load_suite(path, host)


# ---------------------------------------------------------------- a plugin component kind


@dataclass(frozen=True, kw_only=True)
class AdapterSpec(ComponentSpec):
    """factory(width=int, **options) -> nn.Module."""


class Adapter(nn.Module):
    def __init__(self, width: int, scale: float = 1.0):
        super().__init__()
        self.proj = nn.Linear(width, width)


adapters = types.ModuleType("adapters_plugin")
adapters.vlbench_register_component_kinds = hookimpl(
    lambda register: register(
        ComponentKind(
            name="adapter",
            spec_type=AdapterSpec,
            order=30,
            axis="adapters",
            build=lambda spec, choice, parts, inputs, cache_dir: spec.factory(
                width=parts["vision"].info.pooled_dim, **choice.options
            ),
        )
    )
)
adapters.vlbench_register_components = hookimpl(
    lambda register: register(AdapterSpec(name="tiny_adapter", factory=Adapter, options={"scale": 1.0}))
)


def test_vlbench_register_component_kinds_and_components_add_a_kind_with_no_core_edit(tmp_path):
    plain = PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks)], load_entry_points=False)
    host = PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks), ("adapters", adapters)], load_entry_points=False)
    assert not host.failures and list(host.kinds) == ["vision", "text", "adapter", "fusion", "task", "dataset"]
    assert sorted(host.specs("adapter")) == ["tiny_adapter"]
    path = tmp_path / "s.toml"
    path.write_text(SUITE)
    # Without the axis, a run's id is what it was before the kind existed.
    assert [r.run_id for r in load_suite(path, host).runs] == [r.run_id for r in load_suite(path, plain).runs]
    path.write_text(
        SUITE + '[[adapters]]\nname = "tiny_adapter"\n[[adapters]]\nname = "tiny_adapter"\noptions = { scale = 2.0 }\n'
    )
    runs = load_suite(path, host).runs
    assert len(runs) == 2 and runs[0].label == "mock_vision+mock_text+tiny_adapter+mock_fusion/mock_classification"
    outcome = run_suite(runs[:1], host, tmp_path / "results", tmp_path / "cache", torch.device("cpu"), warn=lambda _: None)
    record = read_record(outcome.records[0])
    assert record["status"] == "ok", record["error"]
    assert record["components"]["adapter"]["name"] == "tiny_adapter" and record["config"]["adapter"]["options"] == {"scale": 1.0}
    assert record["cost"]["params"]["components"]["adapter"]["total"] == 16 * 16 + 16
    wrong = types.ModuleType("wrong")
    wrong.vlbench_register_components = hookimpl(
        lambda register: register(FusionSpec(name="x", factory=object, objectives=frozenset({"embedding"})))
    )
    host = PluginHost(extra_plugins=[("wrong", wrong)], load_entry_points=False)
    assert host.failures and re.search("expected a .*got FusionSpec", host.failures[0].error)
