"""`vlbench leaderboard show`: the tables sized to the terminal.

The model name and the main metric never wrap. The model column names only what tells a
table's runs apart (components, options, seed); the components every run shares go to the caption. When the table is wider
than the terminal, headers are abbreviated first, then columns drop out, the least important
first (:data:`PRIORITY`); the caption says which. ``--wide`` shows every column (folded to
fit); ``--columns`` picks them by name. Failed runs are listed with their whole error.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from typing import Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vlbench.errors import UserError
from vlbench.leaderboard.columns import Column, distinguishing_names, error_line, summary, table_columns
from vlbench.leaderboard.tables import Leaderboard, Partition

# Most important first; columns not named here come after them, in table order.
PRIORITY = (
    "model",
    "main test",
    "chance",
    "flags",
    "params (M)",
    "latency p50 (ms)",
    "CI95",
    "#",
    "Pareto-optimal on",
    "GMACs",
    "throughput (img/s)",
    "weights",
    "noisy cost",
    "throughput batch",
    "fp16 size (MB)",
    "seed",
)
NEVER_DROPPED = {"model", "main test"}
SHORT_HEADERS = {
    "params (M)": "Mparams",
    "latency p50 (ms)": "ms b1",
    "throughput (img/s)": "img/s",
    "Pareto-optimal on": "Pareto",
    "throughput batch": "batch",
    "fp16 size (MB)": "fp16 MB",
    "weights": "init",
    "noisy cost": "noisy",
}
SHORT_CELLS = {
    "random-init": "rand",
    "pretrained": "pre",
    "params": "P",
    "GMACs": "G",
    "latency": "L",
    "not above chance": "≈chance",
    "not above the best baseline": "≈baseline",
    "noisy cost": "noisy",
}


def _shorten(text: str) -> str:
    text = re.sub(r"noisy cost \([^)]*\)", "noisy cost", text)  # the problem names: --wide, or the run's page
    for long, short in SHORT_CELLS.items():
        text = re.sub(rf"\b{re.escape(long)}\b", short, text) if long[0].isalnum() else text.replace(long, short)
    return text


def _width(header: str, cells: Sequence[str]) -> int:
    return max([cell_len(header), *(cell_len(c) for c in cells)])


def _chosen(columns: list[Column], names: Sequence[str]) -> list[Column]:
    wanted = [n.strip().lower() for n in names if n.strip()]
    by_name = {c.key.lower(): c for c in columns} | {c.header.lower(): c for c in columns}
    unknown = [n for n in wanted if n not in by_name]
    if unknown:
        raise UserError(
            f"--columns: no column {', '.join(map(repr, unknown))}; this table has "
            f"{', '.join(repr(c.key) for c in columns)} (a key or a header, comma-separated)."
        )
    return [by_name[n] for n in wanted]


def fit(board: Leaderboard, part: Partition, width: int, wide: bool = False, names: Sequence[str] | None = None) -> Table:
    """One partition's table for a terminal ``width`` columns wide."""
    columns = table_columns(part, detailed=wide)
    if names:
        columns = _chosen(table_columns(part, detailed=True), names)
    rows = part.rows.to_dict("records")
    models, common = distinguishing_names([board.record(r) for r in rows])
    cells = {c.key: [models[i] if c.key == "model" else c.cell(r)[0] for i, r in enumerate(rows)] for c in columns}
    headers = {c.key: c.header for c in columns}
    dropped: list[str] = []
    if not wide and not names:

        def total() -> int:  # rich's heavy box: a border per column plus one, a space of padding each side
            return sum(_width(headers[c.key], cells[c.key]) + 3 for c in columns) + 1

        if total() > width:
            headers = {k: SHORT_HEADERS.get(k, h) for k, h in headers.items()}
            cells = {
                k: [_shorten(v) for v in vs] if k in ("weights", "flags", "Pareto-optimal on") else vs for k, vs in cells.items()
            }
        rank = {key: i for i, key in enumerate(PRIORITY)}
        while total() > width:
            candidates = [c for c in columns if c.key not in NEVER_DROPPED]
            if not candidates:
                break
            worst = max(candidates, key=lambda c: (rank.get(c.key, len(PRIORITY)), columns.index(c)))
            columns.remove(worst)
            dropped.append(worst.header)
    caption = []
    if common:
        caption.append(f"every run: {common}")
    if dropped:
        caption.append(f"left out at {width} columns: {', '.join(dropped)} (--wide or --columns to choose)")
    table = Table(
        title=Text(f"{part.suite}: {part.title}"),
        title_justify="left",
        caption=Text(" · ".join(caption)) if caption else None,
        caption_justify="left",
    )
    for c in columns:
        keep = c.key in NEVER_DROPPED or not wide
        table.add_column(
            Text(headers[c.key]),
            justify="left" if c.digits is None else "right",
            no_wrap=keep,
            overflow="ellipsis" if keep else "fold",
        )
    for i in range(len(rows)):
        table.add_row(*(Text(cells[c.key][i]) for c in columns))
    return table


def show(board: Leaderboard, console: Console, wide: bool = False, columns: Sequence[str] | None = None) -> None:
    """Every table of ``board``, then failed, missing and invalid records, then the notes."""
    console.print(Text(summary(board)))
    for part in board.partitions() + board.cost_partitions():
        console.print(fit(board, part, console.width, wide, columns))
    _listing(
        console,
        "Failed runs",
        [
            (
                f"{r['model']}  [{r['run id']}]  suite {r['suite']}, finished {r['finished at']}"
                + (f"; {r['note']}" if r["note"] else ""),
                error_line(board.record(r), limit=None),
            )
            for r in board.failed.to_dict("records")
        ],
    )
    _listing(
        console,
        "Missing runs",
        [
            (f"{r['model']}  [{r['run id']}]  suite {r['suite']}", f"declared in {r['suite file']}")
            for r in board.missing.to_dict("records")
        ],
    )
    _listing(console, "Invalid record files (skipped)", [(source, problem) for source, problem in board.invalid])
    for note in board.notes:
        console.print(Text(f"note: {note}"))


def _listing(console: Console, title: str, entries: Sequence[tuple[str, str]]) -> None:
    """Entries as a heading line and their detail indented below, wrapped but never cut."""
    if not entries:
        return
    console.print(Text(title, style="bold"))
    for head, detail in entries:
        width = max(console.width, 34)
        fill: dict[str, Any] = dict(width=width, break_long_words=True, break_on_hyphens=False)
        console.print(Text(textwrap.fill(head, initial_indent="  ", subsequent_indent="      ", **fill)), soft_wrap=True)
        console.print(Text(textwrap.fill(detail, initial_indent="    ", subsequent_indent="    ", **fill)), soft_wrap=True)


def report_source(console: Console, board: Leaderboard, default: bool) -> None:
    """Which folder was read and how many records it held."""
    files = len(board.records) + len(board.invalid)
    which = " (the default results folder; `vlbench leaderboard show leaderboard/results` shows the project's)" if default else ""
    console.print(Text(f"read {files} record file{'s' if files != 1 else ''} from {board.results_dir}/{which}"), soft_wrap=True)
