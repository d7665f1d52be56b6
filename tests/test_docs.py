"""Docs that cannot rot: every hook is documented with its exact signature and has a test, the
tutorial's files are the example package's files, and the documented code runs and passes
the contracts."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from vlbench import hookspecs
from vlbench.manager import PluginHost
from vlbench.testing.contracts import check_dataset, check_fusion, check_task, check_vision_encoder
from vlbench.types import RunContext

ROOT = Path(__file__).resolve().parents[1]
HOOKS_MD = ROOT / "docs" / "hooks.md"
TUTORIAL = ROOT / "docs" / "writing-plugins.md"
EXAMPLE = ROOT / "examples" / "vlbench-example-plugin"
HOOKS = sorted(name for name in dir(hookspecs) if name.startswith("vlbench_"))
FENCE = re.compile(r'^```(\w*)(?: title="([^"]+)")?\n(.*?)^```$', re.DOTALL | re.MULTILINE)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def signature(hook: str) -> str:
    """``def name(arg: Type) -> Return`` as written in core/hookspecs.py."""
    annotations = dict(getattr(hookspecs, hook).__annotations__)
    returns = annotations.pop("return")
    return f"def {hook}({', '.join(f'{arg}: {kind}' for arg, kind in annotations.items())}) -> {returns}"


def hook_sections() -> dict[str, str]:
    """hooks.md text under each heading that names a hook."""
    sections: dict[str, str] = {}
    for chunk in re.split(r"^(?=#{1,3} )", HOOKS_MD.read_text(), flags=re.MULTILINE):
        title = chunk.splitlines()[0].lstrip("# ").strip() if chunk.strip() else ""
        if title.startswith("vlbench_"):
            sections[title] = chunk
    return sections


def blocks(path: Path) -> list[tuple[str, str | None, str]]:
    """(language, title, code) of every fenced block."""
    return [(lang, title, code) for lang, title, code in FENCE.findall(path.read_text())]


def load(code: str, name: str) -> types.ModuleType:
    """A documented code block as a module, the way an entry point would import it."""
    module = types.ModuleType(name)
    exec(compile(code, f"<{name}>", "exec"), module.__dict__)
    return module


def tutorial_module(title: str) -> types.ModuleType:
    (code,) = [code for _, t, code in blocks(TUTORIAL) if t == title]
    return load(code, title.replace("/", "_").removesuffix(".py"))


# ---------------------------------------------------------------- docs/hooks.md


@pytest.mark.parametrize("hook", HOOKS)
def test_hook_is_documented_with_its_exact_signature(hook):
    section = hook_sections().get(hook)
    assert section is not None, f"docs/hooks.md has no heading for {hook}"
    assert signature(hook) in section, f"docs/hooks.md must show `{signature(hook)}` under {hook}"
    if getattr(hookspecs, hook).vlbench_spec["firstresult"]:
        assert "firstresult" in section, f"docs/hooks.md must say that {hook} is firstresult"


def test_docs_hooks_names_no_hook_that_does_not_exist():
    assert sorted(set(hook_sections()) - set(HOOKS)) == []


def test_every_hook_has_a_test():
    """As datasette does: each hook has a test function of its own, named test_<hook>[_...]."""
    tests = {
        name
        for path in (ROOT / "tests").glob("test_*.py")
        for name in re.findall(r"^def (test_\w+)\(", path.read_text(), flags=re.MULTILINE)
    }
    assert [hook for hook in HOOKS if not any(t == f"test_{hook}" or t.startswith(f"test_{hook}_") for t in tests)] == []


def test_hooks_md_examples_run_and_pass_the_contracts(tmp_path, monkeypatch):
    runnable = [code for lang, _, code in blocks(HOOKS_MD) if lang == "python" and "my_package" not in code and "\n    " in code]
    modules = [(f"hooks_md_{i}", load(code, f"hooks_md_{i}")) for i, code in enumerate(runnable)]
    host = PluginHost(extra_plugins=modules, load_entry_points=False)
    assert not host.failures, [f.describe() for f in host.failures]
    fusions, datasets = host.specs("fusion").values(), host.specs("dataset").values()
    assert fusions and datasets
    for spec in fusions:
        check_fusion(spec, **spec.options)
    for spec in datasets:
        check_dataset(spec, tmp_path, **spec.options)
    monkeypatch.chdir(tmp_path)
    failed: list[str] = []
    context = RunContext("tiny", "r1", tmp_path / "results" / "tiny" / "r1.json", None)
    host.run_finished({"run_id": "r1", "label": "tiny_cnn+...", "status": "ok"}, context, report=failed.append)
    assert not failed and (tmp_path / "runs.jsonl").read_text().count("\n") == 1


# ---------------------------------------------------------------- docs/writing-plugins.md


def test_tutorial_files_are_the_example_package():
    titled = {title: code for _, title, code in blocks(TUTORIAL) if title}
    assert set(titled) >= {
        "pyproject.toml",
        "src/vlbench_example_plugin/encoder.py",
        "src/vlbench_example_plugin/task.py",
        "suites/example.toml",
        "tests/test_example_plugin.py",
    }
    for title, code in titled.items():
        assert code == (EXAMPLE / title).read_text(), (
            f"docs/writing-plugins.md shows a {title} that differs from {EXAMPLE / title}"
        )


def test_tutorial_encoder_registers_and_passes_the_contract():
    module = tutorial_module("src/vlbench_example_plugin/encoder.py")
    host = PluginHost(extra_plugins=[("tutorial.encoder", module)], load_entry_points=False)
    spec = host.get("vision", "tiny_cnn")
    assert (spec.plugin, spec.distribution) == ("tutorial.encoder", "(in-process)")
    check_vision_encoder(spec, **spec.options)
    check_vision_encoder(spec, image_size=(37, 23), width=8)  # odd sides: the grid rounds up


def test_tutorial_encoder_is_well_under_30_lines():
    (code,) = [code for _, title, code in blocks(TUTORIAL) if title == "src/vlbench_example_plugin/encoder.py"]
    assert len([line for line in code.splitlines() if line.strip()]) <= 25


def test_tutorial_task_registers_and_passes_the_contract():
    module = tutorial_module("src/vlbench_example_plugin/task.py")
    spec = PluginHost(extra_plugins=[("tutorial.task", module)], load_entry_points=False).get("task", "caption_choice")
    check_task(spec, **spec.options)
    check_task(spec, choices=2)


def test_tutorial_documents_plugin_selection_and_the_commands():
    text = TUTORIAL.read_text()
    for needle in (
        "VLBENCH_BLOCK_PLUGINS",
        "VLBENCH_LOAD_PLUGINS",
        "vlbench plugins",
        "vlbench check-plugin",
        "vlbench new-plugin",
        "[project.entry-points.vlbench]",
    ):
        assert needle in text, f"docs/writing-plugins.md does not mention {needle}"
