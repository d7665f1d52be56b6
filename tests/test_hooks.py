"""One test per hook (datasette's rule; tests/test_docs.py checks that each hook has one): an
in-process plugin implements the hook and the host serves what it registered, stamped with
the plugin's name. Hooks with a richer behaviour have more tests elsewhere (objectives and
component kinds: test_objectives.py; observers: test_throughput_profile.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vlbench import hookimpl
from vlbench.manager import PluginHost
from vlbench.plugins.language_models import builtin as language_models
from vlbench.testing import mocks
from vlbench.types import RunContext


@pytest.fixture(scope="module")
def host() -> PluginHost:
    return PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks)], load_entry_points=False)


def served(host: PluginHost, hook: str, kind: str, name: str) -> None:
    assert mocks.PLUGIN_NAME in host.implementers(hook)
    spec = host.get(kind, name)
    assert spec.name == name and spec.plugin == mocks.PLUGIN_NAME


def test_vlbench_register_vision_encoders(host):
    served(host, "vlbench_register_vision_encoders", "vision", "mock_vision")


def test_vlbench_register_text_encoders(host):
    served(host, "vlbench_register_text_encoders", "text", "mock_text")


def test_vlbench_register_fusions(host):
    served(host, "vlbench_register_fusions", "fusion", "mock_fusion")
    assert host.get("fusion", "mock_decoder").objectives == frozenset({"generation"})


def test_vlbench_register_tasks(host):
    served(host, "vlbench_register_tasks", "task", "mock_retrieval")
    assert host.get("task", "mock_classification").objective == "classification"


def test_vlbench_register_datasets(host):
    served(host, "vlbench_register_datasets", "dataset", "mock_dataset")


def test_vlbench_register_components():
    """Specs of a kind another plugin adds (here the built-in language_model kind)."""

    class MyLanguageModels:
        @hookimpl
        def vlbench_register_components(self, register):
            register(language_models.LanguageModelSpec(name="my_lm", factory=object, description="a third party's LM"))

    host = PluginHost(
        extra_plugins=[(mocks.PLUGIN_NAME, mocks), ("lm_kind", language_models), ("mine", MyLanguageModels())],
        load_entry_points=False,
    )
    assert not host.failures, [f.describe() for f in host.failures]
    spec = host.get("language_model", "my_lm")
    assert spec.plugin == "mine" and sorted(host.specs("language_model")) == [
        "hf_causal_lm",
        "my_lm",
        "smollm2_135m",
        "tiny_llama",
    ]


def test_vlbench_resolve_vision_encoder(host):
    class Resolver:
        @hookimpl
        def vlbench_resolve_vision_encoder(self, name):
            if name.startswith("mine:"):
                base = host.get("vision", "mock_vision")
                return dataclasses.replace(base, name=name, plugin="")
            return None

    resolving = PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks), ("resolver", Resolver())], load_entry_points=False)
    spec = resolving.get("vision", "mine:small")
    assert spec.name == "mine:small" and spec.plugin == "resolver"  # stamped with the resolving plugin
    with pytest.raises(Exception, match="other:small"):
        resolving.get("vision", "other:small")  # nobody resolves it: the registry's unknown-name error


def test_vlbench_run_finished(tmp_path):
    seen: list[tuple] = []

    class Observer:
        @hookimpl
        def vlbench_run_finished(self, record, runs_dir, context):
            seen.append((record["run_id"], runs_dir, context.run_dir))

    class OnlyRecord:  # an observer may take any subset of the hook's arguments
        @hookimpl
        def vlbench_run_finished(self, record):
            seen.append((record["run_id"],))

    class Broken:
        @hookimpl
        def vlbench_run_finished(self, record):
            raise RuntimeError("observer down")

    host = PluginHost(
        extra_plugins=[(mocks.PLUGIN_NAME, mocks), ("obs", Observer()), ("only", OnlyRecord()), ("broken", Broken())],
        load_entry_points=False,
    )
    context = RunContext(suite="s", run_id="r1", record_path=tmp_path / "r1.json", run_dir=tmp_path / "s" / "r1")
    reports: list[str] = []
    host.run_finished({"run_id": "r1"}, context, runs_dir=Path(tmp_path), report=reports.append)
    assert sorted(seen, key=len) == [("r1",), ("r1", Path(tmp_path), tmp_path / "s" / "r1")]
    assert len(reports) == 1 and "'broken'" in reports[0] and "observer down" in reports[0]
