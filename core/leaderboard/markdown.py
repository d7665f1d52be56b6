"""LEADERBOARD.md: one Markdown table per partition, its plot, and the problem listings."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vlbench.leaderboard.columns import RULES, problem_tables, rows_of, summary, table_columns
from vlbench.leaderboard.tables import Leaderboard


def _md(value: Any) -> str:
    """Text for a Markdown table cell: HTML-escaped (GitHub renders inline HTML) and with
    Markdown punctuation escaped, so a name can neither inject markup nor break the table."""
    escaped = html.escape(" ".join(str(value).split()), quote=False)
    return re.sub(r"([\\`*_\[\]|~])", r"\\\1", escaped)


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[bool]) -> list[str]:
    lines = ["| " + " | ".join(_md(h) for h in headers) + " |", "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    return lines + ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]


def write_markdown(board: Leaderboard, path: Path, plots: Mapping[str, str]) -> Path:
    lines = ["# vlbench leaderboard", "", summary(board), "", RULES, "", "Every column is explained in docs/leaderboard.md.", ""]
    for suite in board.suites():
        lines += [f"## Suite {_md(suite)}", ""]
        for part in board.partitions(suite) + board.cost_partitions(suite):
            columns = table_columns(part, detailed=False)
            cells = [[c.cell(row)[0] for c in columns] for row in rows_of(part.rows)]
            numeric = [c.digits is not None for c in columns]
            lines += [f"### {_md(part.title)}", "", *_md_table([c.header for c in columns], cells, numeric), ""]
            if part.slug in plots:
                lines += [f"![{_md(part.rows.iloc[0]['main metric'])} against cost: {_md(part.title)}]({plots[part.slug]})", ""]
    for problems in problem_tables(board):
        lines += [f"## {problems.title}", ""]
        lines += _md_table(problems.headers, problems.rows, [False] * len(problems.headers)) if problems.rows else ["None."]
        lines.append("")
    lines += [f"- {_md(note)}" for note in board.notes]
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path
