"""What every writer shows: the columns of a table (headers with units, number formats),
the names that tell a table's runs apart, the summary line and the failed/missing listings.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from vlbench.leaderboard.records import is_missing, with_unit
from vlbench.leaderboard.tables import Leaderboard, Partition, page_path, plural
from vlbench.sanitize import terminal_text


def _facets(record: Mapping[str, Any]) -> dict[str, str]:
    """What a run is made of: each component's name and options, and the seed, as text."""
    facets: dict[str, str] = {}
    components = raw if isinstance(raw := record.get("components"), Mapping) else {}
    for kind, block in components.items():
        if not isinstance(block, Mapping):
            continue
        facets[str(kind)] = str(block.get("name"))
        options = raw if isinstance(raw := block.get("options"), Mapping) else {}
        for key, value in options.items():
            facets[f"{kind}.{key}"] = f"{key}={json.dumps(value, sort_keys=True, default=str)}".replace('"', "")
    facets["seed"] = f"seed {record.get('seed')}"
    return facets


def distinguishing_names(records: Sequence[Mapping[str, Any]]) -> tuple[list[str], str]:
    """Each run named by what tells it apart from the others (component names, options, seed:
    "resnet18 early embed_dim=128"), and the component names they all share, for a caption."""
    facets = [_facets(r) for r in records]
    keys = list(dict.fromkeys(k for f in facets for k in f))

    def varies(key: str) -> bool:
        if "." not in key:
            return len({f.get(key) for f in facets}) > 1
        kind = key.split(".")[0]  # an option counts between runs of the same component only
        return any(len({f.get(key) for f in facets if f.get(kind) == name}) > 1 for name in {f.get(kind) for f in facets})

    varying = [k for k in keys if varies(k)]
    if not varying:  # one run, or identical configs: the vision encoder names it
        varying = [k for k in keys if "." not in k][:1]
    kinds = {k for k in varying if "." not in k}
    names = [" ".join(f.get(k) or f"no {k}" for k in varying if "." not in k or f.get(k)) for f in facets]
    shared = " ".join(facets[0][k] for k in keys if "." not in k and k not in kinds and k != "seed" and k in facets[0])
    return [terminal_text(name) for name in names], terminal_text(shared)  # record text: no control characters


@dataclass(frozen=True)
class Column:
    key: str  # column of Leaderboard.runs; "CI95" reads "CI95 low" and "CI95 high"
    header: str  # units explicit
    digits: int | None = None  # decimals of a number; None: a text column

    def cell(self, row: Mapping[str, Any]) -> tuple[str, float | None]:
        """(the text shown, the number to sort on: None for text and for empty cells)."""
        if self.key == "CI95":
            low, high = row["CI95 low"], row["CI95 high"]
            if is_missing(low) or is_missing(high):
                return "—", None
            return f"[{low:.{self.digits}f}, {high:.{self.digits}f}]", float(low)
        value: Any = row.get(self.key)
        if is_missing(value):
            return "—", None
        if self.digits is None:
            return str(value), None
        return f"{value:,.{self.digits}f}", float(value)


# The record's cost fields as columns: (column = header, decimals; None for text).
COST_COLUMNS = [
    Column(key, key, digits)
    for key, digits in (
        ("params (M)", 2),
        ("trainable params (M)", 2),
        ("vision params (M)", 2),
        ("text params (M)", 2),
        ("GMACs", 2),
        ("vision GMACs", 2),
        ("text GMACs", 2),
        ("GFLOPs", 2),
        ("latency p50 (ms)", 2),
        ("latency p90 (ms)", 2),
        ("latency p99 (ms)", 2),
        ("vision latency p50 (ms)", 2),
        ("throughput (img/s)", 0),
        ("throughput batch", 0),
        ("inference memory (MB)", 1),
        ("train-step memory (MB)", 1),
        ("fp16 size (MB)", 1),
        ("cost problems", None),
        ("noisy cost", None),
    )
]


COMPACT_COST = {"params (M)", "GMACs", "latency p50 (ms)", "throughput (img/s)"}


def table_columns(part: Partition, detailed: bool) -> list[Column]:
    """The columns of one table; cost columns no run of the partition measured are left out."""
    measured_cost = [c for c in COST_COLUMNS if not part.rows[c.key].map(is_missing).all()]
    if part.cost_only:  # unranked: no quality, so no rank and no Pareto front
        compact = COMPACT_COST | {"throughput batch", "fp16 size (MB)", "noisy cost"}
        columns = [Column("model", "model"), Column("weights", "weights")]
        columns += [c for c in measured_cost if detailed or c.key in compact] + [Column("seed", "seed")]
        return columns + ([Column("git commit", "git commit"), Column("finished at", "finished at (UTC)")] if detailed else [])
    first = part.rows.iloc[0]
    main, unit = first["main metric"], first["main unit"]
    columns = [Column("#", "#", 0), Column("model", "model")]
    if detailed:
        columns += [Column("vision", "vision"), Column("text", "text"), Column("fusion", "fusion")]
    columns += [
        Column("weights", "weights"),
        Column("main test", with_unit(f"{main} test", unit), 2),
        Column("CI95", with_unit("95% CI", unit), 2),
        Column("vs leader", "vs leader"),
    ]
    if (part.rows["reference"].fillna("chance") == "chance").all():
        columns.append(Column("chance", with_unit("chance", unit), 2))
    else:  # no chance level for this metric: the baseline's value and which baseline it is
        columns += [Column("chance", with_unit("baseline", unit), 2), Column("reference", "baseline is")]
    if detailed:
        columns.append(Column("main val", with_unit(f"{main} val", unit), 2))
        for split in ("train", "val", "test"):  # every other metric of every split scored
            main_key = with_unit(f"{split} {main}", unit) if split != "train" else None
            columns += [
                Column(c, c, 2)
                for c in part.rows.columns
                if c.startswith(f"{split} ") and c != main_key and part.rows[c].notna().any()
            ]
        columns += [
            Column(c, c, 0 if c == "best epoch" else 1) for c in ("best epoch", "runtime (s)") if part.rows[c].notna().any()
        ]
    columns += [c for c in measured_cost if detailed or c.key in COMPACT_COST]
    columns += [Column("Pareto-optimal on", "Pareto-optimal on")]
    if part.rows["flags"].ne("").any():
        columns.append(Column("flags", "flags"))
    columns.append(Column("seed", "seed"))
    if detailed:
        columns += [Column("git commit", "git commit"), Column("finished at", "finished at (UTC)")]
    return columns


RULES = (
    "Rows are ranked on the task's main test metric (selected on val, never on test); CI is the "
    'bootstrap 95% interval over the task\'s unit (identities, images); "CI overlaps" marks a run whose '
    "interval overlaps the leader's, so its rank below the leader is not established; chance is what a random scorer gets. Each table holds one task on one "
    "dataset on one hardware class (device name + precision): cost figures are never compared across "
    "hardware. Runs marked random-init were trained from random weights."
)


def summary(board: Leaderboard) -> str:
    latest = board.runs["finished at"].max() if not board.runs.empty else None
    counts = [
        plural(len(board.runs), "successful run") + " in " + plural(board.runs["suite"].nunique(), "suite"),
        plural(len(board.costs), "cost-only run"),
        f"{len(board.failed)} failed",
        f"{len(board.missing)} missing" if board.missing_checked else "missing runs not checked",
        plural(len(board.invalid), "invalid record file") + " skipped",
    ]
    return ", ".join(counts) + (f"; newest record finished {latest}." if latest else ".")


@dataclass(frozen=True)
class ProblemTable:
    title: str
    headers: list[str]
    rows: list[list[str]]
    pages: list[str | None]  # each row's provenance page, where it has one


def problem_tables(board: Leaderboard, suite: str | None = None) -> list[ProblemTable]:
    """Failed runs, missing runs and (for the whole board) invalid files, as text."""
    failed = rows_of(board.failed if suite is None else board.failed[board.failed["suite"] == suite])
    missing = rows_of(board.missing if suite is None else board.missing[board.missing["suite"] == suite])
    tables = [
        ProblemTable(
            "Failed runs",
            ["suite", "model", "run id", "error", "finished at (UTC)", "note"],
            [[r["suite"], r["model"], r["run id"], error_line(board.record(r)), r["finished at"], r["note"]] for r in failed],
            [page_path(r) for r in failed],
        ),
        ProblemTable(
            "Missing runs",
            ["suite", "model", "run id", "declared in"],
            [[r["suite"], r["model"], r["run id"], r["suite file"]] for r in missing],
            [None] * len(missing),
        ),
    ]
    if suite is None:
        invalid = [list(item) for item in board.invalid]
        tables.append(ProblemTable("Invalid record files (skipped)", ["file", "problem"], invalid, [None] * len(invalid)))
    return tables


def error_line(record: Mapping[str, Any], limit: int | None = 200) -> str:
    """The error on one line, cut at ``limit`` characters (None: whole)."""
    error = record.get("error") or {}
    line = terminal_text(f"{error.get('type', 'Error')}: {' '.join(str(error.get('message', '')).split())}")
    return line if limit is None or len(line) <= limit else line[: limit - 1] + "…"


def rows_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return frame.to_dict("records")
