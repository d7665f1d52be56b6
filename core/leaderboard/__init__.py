"""The leaderboard: result records -> pandas tables -> LEADERBOARD.md, CSV files, plots, a
static site and terminal tables.

One job per module, each importing only those before it:

* :mod:`~vlbench.leaderboard.records`: read and validate a results folder, one row per record;
* :mod:`~vlbench.leaderboard.tables`: the latest record per run, failed and missing runs, ranks,
  Pareto fronts, partitions;
* :mod:`~vlbench.leaderboard.columns`: what every writer shows (columns, names, summaries);
* writers: :mod:`~vlbench.leaderboard.markdown`, :mod:`~vlbench.leaderboard.csv_files`,
  :mod:`~vlbench.leaderboard.plots`, :mod:`~vlbench.leaderboard.site` (Jinja2 templates),
  :mod:`~vlbench.leaderboard.terminal`;
* :mod:`~vlbench.leaderboard.output` (build and publish) and :mod:`~vlbench.leaderboard.cli`.

The names below are importable from the package itself; each loads its module on first use
(PEP 562), so the CLI can register its commands without importing pandas or matplotlib.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "load": "tables",
    "Leaderboard": "tables",
    "Partition": "tables",
    "pareto_mask": "tables",
    "DEFAULT_SUITES": "tables",
    "hardware_class": "records",
    "above_reference": "records",
    "DEFAULT_RESULTS": "records",
    "table_columns": "columns",
    "distinguishing_names": "columns",
    "summary": "columns",
    "build": "output",
    "publish": "output",
    "BuildResult": "output",
    "add_leaderboard_parser": "cli",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
