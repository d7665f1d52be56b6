"""PluginHost: entry points, provenance, isolation of broken plugins, duplicates, env vars."""

from __future__ import annotations

import importlib
import sys
import textwrap
from pathlib import Path

import pytest

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.manager import PluginHost
from vlbench.types import RunContext

ENCODER_PLUGIN = """
from vlbench import hookimpl
from vlbench.types import VisionEncoderSpec

@hookimpl
def vlbench_register_vision_encoders(register):
    register(VisionEncoderSpec(name={name!r}, factory=lambda **kw: None, description="from {dist}"))
"""


def make_distribution(root: Path, dist: str, version: str, modules: dict[str, str]) -> None:
    """A real installed distribution on sys.path: dist-info with entry points + modules."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = ["[vlbench]"] + [f"{name} = {name}" for name in modules]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def site(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    for name in list(sys.modules):
        if name.startswith("thirdparty_"):
            del sys.modules[name]


def test_builtins_load_through_the_entry_point_group_with_provenance():
    host = PluginHost()
    assert not host.failures, [f.describe() for f in host.failures]
    spec = host.get("vision", "mobilenetv3_small_100")
    assert spec.plugin == "vision.mobilenet"
    assert spec.distribution == "vlbench" and spec.version
    assert set(host.specs("task")) >= {"person_search"}


def test_third_party_plugin_is_listed_with_its_distribution(site):
    make_distribution(site, "vlbench-acme", "1.2.3", {"thirdparty_acme": ENCODER_PLUGIN.format(name="acme_net", dist="acme")})
    host = PluginHost()
    spec = host.get("vision", "acme_net")
    assert (spec.plugin, spec.distribution, spec.version) == ("thirdparty_acme", "vlbench-acme", "1.2.3")


def test_broken_plugin_is_reported_and_the_others_still_load(site):
    make_distribution(site, "vlbench-broken", "0.1", {"thirdparty_broken": "raise ImportError('needs libfoo')"})
    host = PluginHost()
    (failure,) = [f for f in host.failures if f.plugin == "thirdparty_broken"]
    assert failure.distribution == "vlbench-broken" and failure.stage == "import"
    assert "needs libfoo" in failure.describe() and "VLBENCH_BLOCK_PLUGINS=thirdparty_broken" in failure.describe()
    assert "mobilenetv3_small_100" in host.specs("vision")


def test_plugin_whose_registration_raises_is_isolated(site):
    source = "from vlbench import hookimpl\n@hookimpl\ndef vlbench_register_tasks(register):\n    raise RuntimeError('boom')\n"
    make_distribution(site, "vlbench-boom", "0.1", {"thirdparty_boom": source})
    host = PluginHost()
    assert any(f.plugin == "thirdparty_boom" and f.stage == "task registration" for f in host.failures)
    assert "person_search" in host.specs("task")


def test_duplicate_name_is_refused_with_both_owners_named(site):
    make_distribution(site, "vlbench-dup", "2.0", {"thirdparty_dup": ENCODER_PLUGIN.format(name="resnet50", dist="dup")})
    host = PluginHost()
    assert "resnet50" not in host.specs("vision")
    with pytest.raises(UserError) as err:
        host.get("vision", "resnet50")
    message = str(err.value)
    assert "vision.resnet" in message and "vlbench-dup" in message and "thirdparty_dup" in message


def test_block_and_load_environment_variables(site, monkeypatch):
    make_distribution(site, "vlbench-acme", "1.0", {"thirdparty_acme": ENCODER_PLUGIN.format(name="acme_net", dist="acme")})
    monkeypatch.setenv("VLBENCH_BLOCK_PLUGINS", "vlbench-acme,vision.resnet")
    host = PluginHost()
    assert "acme_net" not in host.specs("vision") and "resnet50" not in host.specs("vision")
    assert "mobilenetv3_small_100" in host.specs("vision")
    monkeypatch.delenv("VLBENCH_BLOCK_PLUGINS")
    monkeypatch.setenv("VLBENCH_LOAD_PLUGINS", "thirdparty_acme")
    host = PluginHost()
    assert list(host.specs("vision")) == ["acme_net"]


def test_unknown_name_suggests_close_matches():
    host = PluginHost()
    with pytest.raises(UserError, match="Did you mean 'mobilenetv3_small_100'"):
        host.get("vision", "mobilenetv3_smal_100")


def test_open_timm_names_resolve_through_the_hook():
    spec = PluginHost().get("vision", "timm:resnet18")
    assert spec.name == "timm:resnet18" and spec.plugin == "vision.timm_any"


def test_failing_observer_is_reported_not_raised():
    class Observer:
        from vlbench import hookimpl

        @hookimpl
        def vlbench_run_finished(self, record):
            raise RuntimeError("disk full")

    seen = []
    context = RunContext("s", "x", Path("results/s/x.json"), None)
    PluginHost([("observer", Observer())], load_entry_points=False).run_finished({"run_id": "x"}, context, report=seen.append)
    assert seen and "disk full" in seen[0]


def test_observers_get_the_runs_folder_and_run_context_they_name():
    got: dict[str, object] = {}

    class RecordOnly:  # an observer written before the hook had more arguments
        @hookimpl
        def vlbench_run_finished(self, record):
            got["record_only"] = record["run_id"]

    class Everything:
        @hookimpl
        def vlbench_run_finished(self, record, runs_dir, context):
            got["runs_dir"], got["run_dir"], got["replayed"] = runs_dir, context.run_dir, context.replayed

    host = PluginHost([("old", RecordOnly()), ("new", Everything())], load_entry_points=False)
    context = RunContext("s", "x", Path("results/s/x.json"), Path("runs/s/x"), replayed=True)
    failed: list[str] = []
    host.run_finished({"run_id": "x"}, context, runs_dir=Path("runs"), report=failed.append)
    assert not failed
    assert got == {"record_only": "x", "runs_dir": Path("runs"), "run_dir": Path("runs/s/x"), "replayed": True}


def test_misspelt_hook_is_a_load_failure_not_a_silent_no_op(site):
    source = "from vlbench import hookimpl\n@hookimpl\ndef vlbench_register_text_encodrs(register):\n    pass\n"
    make_distribution(site, "vlbench-typo", "0.1", {"thirdparty_typo": source})
    host = PluginHost()
    (failure,) = [f for f in host.failures if f.plugin == "thirdparty_typo"]
    assert failure.stage == "hook validation" and "vlbench_register_text_encodrs" in failure.error
    assert "thirdparty_typo" not in host.plugins
