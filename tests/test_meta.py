"""Meta-tests: every plugin module is declared in the entry-point group."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_plugin_module_is_declared_as_an_entry_point():
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["vlbench"].values())
    modules = {
        "vlbench.plugins." + ".".join(path.relative_to(ROOT / "plugins").with_suffix("").parts)
        for path in (ROOT / "plugins").rglob("*.py")
        if not path.name.startswith("_")
    }
    assert modules == declared


def test_every_suite_key_is_documented():
    from vlbench.kinds import BUILTIN
    from vlbench.suite.keys import SUITE_KEYS, TRAIN_KEYS

    docs = (ROOT / "docs" / "suites.md").read_text()
    keys = [*SUITE_KEYS, *TRAIN_KEYS, *(k for kind in BUILTIN for k in kind.common_options)]
    assert [k for k in keys if f"`{k}`" not in docs] == []
