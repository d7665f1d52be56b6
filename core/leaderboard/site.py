"""The static leaderboard site: index, one page per suite, one provenance page per run.

Pages are Jinja2 templates (``templates/``) rendered with autoescape on: record text (plugin,
suite, config, error text) reaches them as plain strings and is escaped there, never here.
This module only shapes the data. The CSS, JavaScript and icon are files in ``static/``,
copied next to the pages, so the site works offline, from disk or from any static host; the
JavaScript only moves rows and writes ``textContent``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from vlbench.leaderboard.columns import RULES, ProblemTable, problem_tables, summary, table_columns
from vlbench.leaderboard.tables import Leaderboard, Partition, page_path, plural, slug
from vlbench.results import reference

STATIC = ("leaderboard.css", "leaderboard.js", "favicon.svg")
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("vlbench.leaderboard", "templates"),
    autoescape=True,  # every template, whatever its file name: record text is never markup
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
)


def write_pages(board: Leaderboard, out: Path, plots: Mapping[str, str]) -> list[Path]:
    pages = {"index.html": _render("index.html.j2", root="", title="Leaderboard", **_index(board))}
    for suite in board.suites():
        pages[f"suites/{slug(suite)}.html"] = _render(
            "suite.html.j2", root="../", title=f"Suite {suite}", **_suite(board, suite, plots)
        )
    for frame in (board.runs, board.costs, board.failed):
        for row in frame.to_dict("records"):
            record = board.record(row)
            pages[page_path(row)] = _render(
                "run.html.j2",
                root="../../",
                title=f"{record['label']} ({record['run_id']})",
                **_run(record, row, plots.get(page_path(row))),
            )
    static = resources.files("vlbench.leaderboard").joinpath("static")
    pages |= {f"assets/{name}": static.joinpath(name).read_text(encoding="utf-8") for name in STATIC}
    written = []
    for name, text in pages.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _render(template: str, **context: Any) -> str:
    return _TEMPLATES.get_template(template).render(**context)


# ---------------------------------------------------------------- index and suite pages


def _index(board: Leaderboard) -> dict[str, Any]:
    suites = [
        {"name": s, "slug": slug(s), "partitions": _partitions(board, s, root="", detailed=False, plots={})}
        for s in board.suites()
    ]
    return {
        "summary": summary(board),
        "rules": RULES,
        "suites": suites,
        "notes": board.notes,
        "problems": [_problems(table, root="") for table in problem_tables(board)],
    }


def _suite(board: Leaderboard, suite: str, plots: Mapping[str, str]) -> dict[str, Any]:
    return {
        "suite": suite,
        "rules": RULES,
        "partitions": _partitions(board, suite, root="../", detailed=True, plots=plots),
        "problems": [_problems(table, root="../") for table in problem_tables(board, suite)],
    }


def _partitions(board: Leaderboard, suite: str, root: str, detailed: bool, plots: Mapping[str, str]) -> list[dict[str, Any]]:
    parts = []
    for part in board.partitions(suite) + board.cost_partitions(suite):
        plot = plots.get(part.slug)
        parts.append(
            {
                "heading": f"{part.task} (cost only, unranked: fastest first)"
                if part.cost_only
                else f"{part.task} on {part.dataset}",
                "hardware": part.hardware,
                "count": plural(len(part.rows), "run"),
                "table": _runs_table(part, root, detailed),
                "plot": None if plot is None else root + plot,  # cost-only tables have none (and no main metric)
                "alt": ""
                if plot is None
                else f"{part.rows.iloc[0]['main metric']} test against params, GMACs and latency, Pareto front marked: {part.title}",
            }
        )
    return parts


def _runs_table(part: Partition, root: str, detailed: bool) -> dict[str, Any]:
    """Headers and cells; a cell says how it is shown (a link, a badge, the Pareto mark)."""
    columns = table_columns(part, detailed)
    rows = []
    for row in part.rows.to_dict("records"):
        cells = []
        for column in columns:
            text, sort = column.cell(row)
            style = ""
            if column.key == "weights" and row["random-init"]:
                style = "badge"
            elif column.key == "Pareto-optimal on" and text != "—":
                style = "front"
            elif column.key == "flags" and text != "—":
                style = "badges"
            cells.append(
                {
                    "text": text,
                    "style": style,
                    "href": root + page_path(row) if column.key == "model" else None,
                    "sort": None if column.digits is None else "" if sort is None else repr(sort),
                }
            )
        rows.append({"random_init": bool(row["random-init"]), "cells": cells})
    return {"headers": [{"text": c.header, "ranked": c.key == "#"} for c in columns], "rows": rows}  # rows arrive in rank order


def _problems(table: ProblemTable, root: str) -> dict[str, Any]:
    rows = []
    for row, page in zip(table.rows, table.pages, strict=True):
        cells = [{"text": str(cell), "href": None} for cell in row]
        if page is not None:  # failed runs: the model cell links to the error record's page
            cells[1]["href"] = root + page
        rows.append(cells)
    return {"title": table.title, "headers": table.headers, "rows": rows}


# ---------------------------------------------------------------- provenance


def _run(record: Mapping[str, Any], row: Mapping[str, Any], curve: str | None) -> dict[str, Any]:
    status_badges = [] if record["status"] == "ok" else ["failed"]
    if row["random-init"]:
        status_badges.append("random-init")
    status_badges += [flag for flag in str(row.get("flags") or "").split("; ") if flag]
    score = None
    if record["status"] == "ok" and record["metrics"].get("quality") is not False:
        test = record["metrics"]["splits"]["test"]
        main = test["main"]
        ci = test.get("ci95", {}).get(main)
        ci_text = f" (95% CI {_scalar(ci[0])} to {_scalar(ci[1])})" if ci else ""
        ref = reference(test, main, record["metrics"].get("higher_is_better") is not False)
        score = {
            "name": f"{main} test",
            "text": f"{_scalar(test['values'][main])} {test.get('units', {}).get(main, '')}{ci_text}; "
            + (f"{ref[0]} {_scalar(ref[1])}" if ref else "no chance level"),
        }
    return {
        "record": record,
        "suite_slug": slug(record["suite"]),
        "status_badges": status_badges,
        "score": score,
        "weights": row["weights"],
        "hardware": row["hardware"],
        "source": row["source"],
        "curve": curve,
        "components": [
            {
                "cells": [kind, *(_scalar(block.get(k)) for k in ("name", "plugin", "distribution", "version", "weights"))],
                "options": json.dumps(block.get("options", {}), sort_keys=True),
            }
            for kind, block in record["components"].items()
        ],
        "environment": _node(record["environment"]),
        "metrics": _metrics(record["metrics"]) if record["metrics"] else None,  # a cost-only run: the heading alone
        "selection": _node(record["selection"]) if record["selection"] else None,
        "cost": _node(record["cost"]) if record["cost"] else None,
        "training": _training(record["training"], record["selection"]) if record["training"] else None,
        "dataset": _node(record["dataset"]),
        "config": json.dumps(record["config"], indent=2, sort_keys=True, ensure_ascii=False),
        "whole": json.dumps(record, indent=1, ensure_ascii=False),
    }


def _metrics(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    splits = []
    for split, block in metrics.get("splits", {}).items():
        units, ci = block.get("units", {}), block.get("ci95", {})
        rows = []
        for name, value in block["values"].items():
            interval = f"{_scalar(ci[name][0])} to {_scalar(ci[name][1])}" if name in ci else "—"
            ref = reference(block, name)  # chance, else the best named baseline, labelled
            rows.append(
                [
                    f"{name}{' (main)' if name == block['main'] else ''}",
                    _scalar(value),
                    _scalar(units.get(name, "")),
                    interval,
                    "—" if ref is None else _scalar(ref[1]) if ref[0] == "chance" else f"{_scalar(ref[1])} ({ref[0]})",
                ]
            )
        splits.append({"name": str(split), "rows": rows, "details": _node(block["details"]) if block.get("details") else None})
    return splits


def _training(training: Mapping[str, Any], selection: Mapping[str, Any]) -> dict[str, Any]:
    """A summary of the curve (first and last epoch, the selected one) and the curve itself."""
    curve = training.get("curve") or []
    facts = [(k, _text(_scalar(v))) for k, v in training.items() if k != "curve"]
    if curve:
        facts += [
            (
                "train loss, first → last epoch",
                _text(f"{_scalar(curve[0].get('train_loss'))} → {_scalar(curve[-1].get('train_loss'))}"),
            ),
            (
                "selected epoch (on val)",
                _text(
                    f"{_scalar(selection.get('best_epoch'))}: {_scalar(selection.get('metric'))} = {_scalar(selection.get('best_value'))}"
                ),
            ),
        ]
    return {"facts": facts, "curve": _node(curve) if curve else None, "epochs": len(curve)}


def _text(text: str) -> dict[str, Any]:
    return {"kind": "text", "text": text}


def _node(value: Any) -> dict[str, Any]:
    """Any JSON value as a tree the run template draws: objects as key/value tables ("kv"),
    lists of objects as tables ("table"), anything else as one line of text."""
    if isinstance(value, Mapping):
        return {"kind": "kv", "rows": [(str(k), _node(v)) for k, v in value.items()]} if value else _text("—")
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        keys = list(dict.fromkeys(k for v in value for k in v))
        return {"kind": "table", "columns": [str(k) for k in keys], "rows": [[_node(v.get(k)) for k in keys] for v in value]}
    if isinstance(value, list):
        return _text(", ".join(_scalar(v) if not isinstance(v, (Mapping, list)) else json.dumps(v) for v in value) or "—")
    return _text(_scalar(value))


def _scalar(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else str(value)
    return str(value)
