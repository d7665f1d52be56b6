"""Where vlbench reads and writes by default, in one place: `vlbench run` writes records to
:data:`RESULTS` and `vlbench leaderboard build|publish|show` read them from there.

The project's committed leaderboard lives elsewhere (:data:`PROJECT_RESULTS`, built into
:data:`PROJECT_OUT`); a command reaches it only when that folder is named.
"""

import os
from pathlib import Path

RESULTS = Path("runs/results")  # <suite>/<run-id>.json
RUNS = Path("runs")  # TensorBoard scalars and --profile traces: <runs>/<suite>/<run_id>/
LEADERBOARD_OUT = Path("runs/leaderboard")  # `vlbench leaderboard build` output
PROJECT_RESULTS = Path("leaderboard/results")
PROJECT_OUT = Path("leaderboard")
SUITES = Path("suites")


def default_cache_dir() -> Path:
    """Generated datasets, converted weights and the embedding cache: $VLBENCH_CACHE or ~/.cache/vlbench."""
    return Path(os.environ.get("VLBENCH_CACHE", Path.home() / ".cache" / "vlbench"))
