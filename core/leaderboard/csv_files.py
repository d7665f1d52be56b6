"""leaderboard.csv (quality runs), leaderboard_costs.csv (cost-only runs), and a parquet copy."""

from __future__ import annotations

from pathlib import Path

from vlbench.leaderboard.tables import PARTITION, Leaderboard
from vlbench.sanitize import csv_cell


def write_tables(board: Leaderboard, out: Path) -> list[Path]:
    """leaderboard.csv, and leaderboard.parquet when pandas has a parquet engine installed."""
    columns = [*PARTITION, "#", *(c for c in board.runs.columns if c not in PARTITION and c != "#" and not c.startswith("_"))]
    public = board.runs[columns]
    written = [out / "leaderboard.csv"]
    public.map(csv_cell).to_csv(written[0], index=False)  # no cell a spreadsheet would run as a formula
    if not board.costs.empty:
        written.append(out / "leaderboard_costs.csv")
        board.costs[[c for c in board.costs.columns if not c.startswith("_")]].map(csv_cell).to_csv(written[-1], index=False)
    try:
        public.to_parquet(out / "leaderboard.parquet", index=False)
        written.append(out / "leaderboard.parquet")
    except ImportError:
        pass  # pyarrow is optional (docs/leaderboard.md): no engine, no parquet file, nothing to report
    return written
