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

:func:`load_suite` reads the file; :mod:`vlbench.suite.keys` holds the keys a suite may set,
:mod:`vlbench.suite.validation` checks its tables and entries, and :mod:`vlbench.suite.runs`
multiplies the axes into runs and gives each its id.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlbench.errors import SuiteError
from vlbench.manager import PluginHost
from vlbench.suite.keys import SUITE_KEYS, TRAIN_KEYS
from vlbench.suite.runs import expand, run_config, run_id
from vlbench.suite.validation import SuiteValidator
from vlbench.types.runs import RunSpec

__all__ = ["SUITE_KEYS", "TRAIN_KEYS", "Suite", "load_suite", "run_config", "run_id"]


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
    validator = SuiteValidator(path, host)
    checked = validator.suite(data)
    runs = expand(checked, validator)
    return Suite(path, checked.name, checked.description, checked.device, checked.seeds, checked.train, runs)
