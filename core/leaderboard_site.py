"""The static leaderboard site: index, one page per suite, one provenance page per run; the
plots it shows are :mod:`vlbench.leaderboard_plots`.

Every string that comes from a record (plugin, suite, config, error text) goes through
``html.escape`` here, and the JavaScript only moves rows and writes ``textContent``: record
data is never parsed as markup. No CDN: the CSS and JS below are written next to the pages,
so the site works offline, from disk or from any static host.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from vlbench.leaderboard import (
    RULES,
    Leaderboard,
    Partition,
    ProblemTable,
    page_path,
    plural,
    problem_tables,
    slug,
    summary,
    table_columns,
)
from vlbench.leaderboard_plots import write_plots  # noqa: F401  (the build calls it through this module)
from vlbench.results import reference

# 'self' only: the pages load nothing from elsewhere, and no inline script or style can run.
CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'"

JS = r""""use strict";
// Sorting and filtering of the leaderboard tables. Rows are moved as DOM nodes and the only
// text written is through textContent: record data never passes through innerHTML.
(() => {
  const sortKey = (row, column) => {
    const cell = row.cells[column];
    if (!cell) return null;
    if (cell.hasAttribute("data-sort")) {
      const raw = cell.getAttribute("data-sort");
      return raw === "" ? null : Number(raw);
    }
    const text = cell.textContent.trim();
    return text === "" || text === "\u2014" ? null : text;
  };

  const compare = (a, b) =>
    typeof a === "number" && typeof b === "number"
      ? a - b
      : String(a).localeCompare(String(b), undefined, { numeric: true, sensitivity: "base" });

  const sortBy = (header) => {
    const body = header.closest("table").tBodies[0];
    const ascending = header.getAttribute("aria-sort") !== "ascending";
    const rows = Array.from(body.rows, (row, index) => ({ row, index, key: sortKey(row, header.cellIndex) }));
    rows.sort((x, y) => {
      if (x.key === null || y.key === null) {
        // Unmeasured cells go last in both directions: "no latency" is not "fastest".
        return x.key === y.key ? x.index - y.index : x.key === null ? 1 : -1;
      }
      return (ascending ? 1 : -1) * compare(x.key, y.key) || x.index - y.index;
    });
    for (const { row } of rows) body.appendChild(row);
    for (const cell of header.parentElement.cells) cell.removeAttribute("aria-sort");
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
  };

  document.addEventListener("DOMContentLoaded", () => {
    for (const button of document.querySelectorAll("table.sortable th button")) {
      button.addEventListener("click", () => sortBy(button.closest("th")));
    }
    const controls = document.querySelector(".controls");
    if (!controls) return;
    const query = controls.querySelector("input[type=search]");
    const hideRandom = controls.querySelector("input[type=checkbox]");
    const shown = controls.querySelector("output");
    const apply = () => {
      const terms = query.value.toLowerCase().split(/\s+/).filter(Boolean);
      let visible = 0;
      let total = 0;
      for (const row of document.querySelectorAll("table.sortable tbody tr")) {
        const text = row.textContent.toLowerCase();
        row.hidden = !terms.every((term) => text.includes(term)) || (hideRandom.checked && row.hasAttribute("data-random-init"));
        if (row.closest("table.runs")) {
          total += 1;
          if (!row.hidden) visible += 1;
        }
      }
      shown.textContent = `showing ${visible} of ${total} runs`;
    };
    query.addEventListener("input", apply);
    hideRandom.addEventListener("change", apply);
    controls.hidden = false;
    apply();
  });
})();
"""

CSS = """:root { color-scheme: light dark; --fg: #1d232a; --muted: #5b6470; --line: #d6dbe1; --head: #eef1f4;
  --row: #f8f9fb; --link: #0b5cad; --badge: #b3261e; --badge-bg: #fdecea; --front: #1b7f3b; }
@media (prefers-color-scheme: dark) { :root { --fg: #e3e6ea; --muted: #a3abb5; --line: #3a414a; --head: #252b33;
  --row: #1c2128; --link: #79b8ff; --badge: #ffb4ab; --badge-bg: #4a1c18; --front: #6fd08c; } }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--fg); margin: 0; }
header, main, footer { max-width: 1400px; margin: 0 auto; padding: 0 1.25rem; }
header { padding-top: .75rem; border-bottom: 1px solid var(--line); }
header nav a { margin-right: 1rem; }
footer { color: var(--muted); border-top: 1px solid var(--line); margin-top: 2rem; padding-block: .75rem; }
a { color: var(--link); }
h1 { font-size: 1.6rem; margin: 1rem 0 .25rem; }
h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.5rem 0 .4rem; }
.lede { font-size: 1.05rem; }
.muted, .rules { color: var(--muted); max-width: 70rem; }
.controls { display: flex; gap: 1.25rem; align-items: center; flex-wrap: wrap; margin: 1rem 0;
  padding: .6rem .8rem; background: var(--head); border-radius: 6px; }
.controls input[type=search] { width: 24rem; max-width: 60vw; padding: .3rem .45rem; }
.table-wrap { overflow: auto; max-width: 100%; max-height: 80vh; border: 1px solid var(--line); border-radius: 4px; margin: .25rem 0 1rem; }
.table-wrap table { margin: 0; }
table { border-collapse: collapse; margin: .25rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .25rem .5rem; vertical-align: top; }
thead th { background: var(--head); position: sticky; top: 0; min-width: 3rem; }
tbody tr:nth-child(even) { background: var(--row); }
td[data-sort] { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th button { all: unset; cursor: pointer; font-weight: 600; }
th button:focus-visible { outline: 2px solid var(--link); }
th button::after { content: " \\2195"; color: var(--muted); font-weight: 400; }
th[aria-sort=ascending] button::after { content: " \\25B2"; color: var(--fg); }
th[aria-sort=descending] button::after { content: " \\25BC"; color: var(--fg); }
.badge { color: var(--badge); background: var(--badge-bg); border-radius: 4px; padding: 0 .35rem; white-space: nowrap; }
.front { color: var(--front); font-weight: 600; }
table.kv th { text-align: left; font-weight: 600; background: var(--head); white-space: nowrap; }
table.kv table.kv { margin: 0; }
main > table.kv { display: block; overflow-x: auto; max-width: 100%; }
pre { background: var(--row); border: 1px solid var(--line); padding: .6rem; overflow-x: auto; max-height: 36rem; }
figure { margin: .5rem 0 1.5rem; }
figure img { max-width: 100%; height: auto; background: #fff; }
figcaption { color: var(--muted); }
"""

FAVICON = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#0b5cad"/>
<path d="M3 12 L6 7 L9 9 L13 3" stroke="#fff" stroke-width="2" fill="none"/></svg>
"""


# ---------------------------------------------------------------- pages


def write_pages(board: Leaderboard, out: Path, plots: Mapping[str, str]) -> list[Path]:
    pages = {"index.html": _index(board)}
    for suite in board.suites():
        pages[f"suites/{slug(suite)}.html"] = _suite_page(board, suite, plots)
    for frame in (board.runs, board.costs, board.failed):
        for row in frame.to_dict("records"):
            pages[page_path(row)] = _run_page(board, row, plots.get(page_path(row)))
    pages |= {"assets/leaderboard.js": JS, "assets/leaderboard.css": CSS, "assets/favicon.svg": FAVICON}
    written = []
    for name, text in pages.items():
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _page(title: str, root: str, body: str) -> str:
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>{escape(title)} · vlbench leaderboard</title>
<link rel="icon" href="{root}assets/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="{root}assets/leaderboard.css">
<script src="{root}assets/leaderboard.js" defer></script>
</head>
<body>
<header><nav><a href="{root}index.html">vlbench leaderboard</a><a href="{root}leaderboard.csv">leaderboard.csv</a>
<a href="{root}LEADERBOARD.md">LEADERBOARD.md</a></nav></header>
<main>
{body}
</main>
<footer>Cost figures are only compared within one hardware class (device name + precision).
Built by <code>vlbench leaderboard</code>.</footer>
</body>
</html>
"""


CONTROLS = """<div class="controls" hidden>
<label>Filter rows <input type="search" placeholder="words a row must contain, e.g. mobilenet random-init" autocomplete="off"></label>
<label><input type="checkbox"> hide random-init runs</label>
<output aria-live="polite"></output>
</div>"""


def _index(board: Leaderboard) -> str:
    parts = [
        "<h1>vlbench leaderboard</h1>", f'<p class="lede">{escape(summary(board))}</p>', f'<p class="rules">{escape(RULES)}</p>',
        CONTROLS,
    ]
    suites = board.suites()
    if suites:
        links = " · ".join(f'<a href="suites/{escape(slug(s))}.html">{escape(s)}</a>' for s in suites)
        parts.append(f"<p>Suites (plots and every metric on each suite's page): {links}</p>")
    for suite in suites:
        parts.append(f'<section>\n<h2>Suite <a href="suites/{escape(slug(suite))}.html">{escape(suite)}</a></h2>')
        parts += _partitions(board, suite, root="", detailed=False, plots={})
        parts.append("</section>")
    parts += [_problems(table, root="") for table in problem_tables(board)]
    parts += [f'<p class="muted">Note: {escape(note)}</p>' for note in board.notes]
    return _page("Leaderboard", "", "\n".join(parts))


def _suite_page(board: Leaderboard, suite: str, plots: Mapping[str, str]) -> str:
    parts = [f"<h1>Suite {escape(suite)}</h1>", f'<p class="rules">{escape(RULES)}</p>', CONTROLS]
    parts += _partitions(board, suite, root="../", detailed=True, plots=plots)
    parts += [_problems(table, root="../") for table in problem_tables(board, suite)]
    return _page(f"Suite {suite}", "../", "\n".join(parts))


def _partitions(board: Leaderboard, suite: str, root: str, detailed: bool, plots: Mapping[str, str]) -> list[str]:
    parts = []
    for part in board.partitions(suite) + board.cost_partitions(suite):
        heading = f"{part.task} (cost only, unranked: fastest first)" if part.cost_only else f"{part.task} on {part.dataset}"
        parts += [f"<h3>{escape(heading)}</h3>",
                  f'<p class="muted">Hardware: {escape(part.hardware)} · {plural(len(part.rows), "run")}</p>',
                  _runs_table(part, root, detailed)]
        if part.slug in plots:
            alt = f"{part.rows.iloc[0]['main metric']} test against params, GMACs and latency, Pareto front marked: {part.title}"
            parts.append(f'<figure><img src="{escape(root + plots[part.slug])}" alt="{escape(alt)}">'
                         f"<figcaption>Each point is named by what sets it apart in this table. Error bars: 95% CI; dashed "
                         f"line: chance level; hollow markers: random-init runs; grey crosses: not above chance; orange "
                         f"rings: cost measured on a busy machine; red: the Pareto front (no other run is both cheaper and "
                         f"better; runs not above chance and noisy cost left out).</figcaption></figure>")
    if not parts:
        parts.append('<p class="muted">No successful runs.</p>')
    return parts


def _runs_table(part: Partition, root: str, detailed: bool) -> str:
    columns = table_columns(part, detailed)
    ranked = ' aria-sort="ascending"'  # rows arrive in rank order
    head = "".join(
        f'<th scope="col"{ranked if c.key == "#" else ""}><button type="button">{escape(c.header)}</button></th>' for c in columns
    )
    body = []
    for row in part.rows.to_dict("records"):
        cells = []
        for column in columns:
            text, sort = column.cell(row)
            if column.key == "model":
                # <wbr> after each "+" (inserted after escaping) lets a long label wrap between its components
                content = f'<a href="{escape(root + page_path(row))}">{escape(text).replace("+", "+<wbr>")}</a>'
            elif column.key == "weights" and row["random-init"]:
                content = f'<span class="badge">{escape(text)}</span>'
            elif column.key == "Pareto-optimal on" and text != "—":
                content = f'<span class="front">{escape(text)}</span>'
            elif column.key == "flags" and text != "—":
                content = " ".join(f'<span class="badge">{escape(flag)}</span>' for flag in text.split("; "))
            else:
                content = escape(text)
            number = "" if column.digits is None else f' data-sort="{"" if sort is None else repr(sort)}"'
            cells.append(f"<td{number}>{content}</td>")
        flag = " data-random-init" if row["random-init"] else ""
        body.append(f"<tr{flag}>{''.join(cells)}</tr>")
    return (f'<div class="table-wrap"><table class="sortable runs">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(body) + "\n</tbody></table></div>")


def _problems(table: ProblemTable, root: str) -> str:
    if not table.rows:
        return f"<h2>{escape(table.title)}</h2>\n<p>None.</p>"
    head = "".join(f'<th scope="col"><button type="button">{escape(h)}</button></th>' for h in table.headers)
    body = []
    for row, page in zip(table.rows, table.pages, strict=True):
        cells = [escape(str(cell)) for cell in row]
        if page is not None:  # failed runs: the model cell links to the error record's page
            cells[1] = f'<a href="{escape(root + page)}">{cells[1]}</a>'
        body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return (f'<h2>{escape(table.title)}</h2>\n<div class="table-wrap"><table class="sortable">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n" + "\n".join(body) + "\n</tbody></table></div>")


# ---------------------------------------------------------------- provenance


def _run_page(board: Leaderboard, row: Mapping[str, Any], curve: str | None = None) -> str:
    record = board.record(row)
    root = "../../"
    status = "ok" if record["status"] == "ok" else "failed"
    parts = [f"<h1>{escape(record['label'])}</h1>"]
    badges = [f'<span class="badge">{escape(status)}</span>'] if status != "ok" else []
    if row["random-init"]:
        badges.append('<span class="badge">random-init</span>')
    badges += [f'<span class="badge">{escape(flag)}</span>' for flag in str(row.get("flags") or "").split("; ") if flag]
    summary_rows = [
        ("suite", f'<a href="{root}suites/{escape(slug(record["suite"]))}.html">{escape(record["suite"])}</a>'),
        ("run id", f"<code>{escape(record['run_id'])}</code>"), ("status", escape(record["status"]) + " " + " ".join(badges)),
    ]
    if record["status"] == "ok" and record["metrics"].get("quality") is not False:
        test = record["metrics"]["splits"]["test"]
        main = test["main"]
        unit = _dict(test.get("units")).get(main, "")
        ci = _dict(test.get("ci95")).get(main)
        ci_text = f" (95% CI {_scalar(ci[0])} to {_scalar(ci[1])})" if isinstance(ci, list) and len(ci) == 2 else ""
        ref = reference(test, main, record["metrics"].get("higher_is_better") is not False)
        shown = f"{_scalar(test['values'][main])} {unit}{ci_text}; " + (f"{ref[0]} {_scalar(ref[1])}" if ref else "no chance level")
        summary_rows.append((f"{main} test", escape(shown)))
    summary_rows += [
        ("weights", escape(row["weights"])), ("hardware class", escape(row["hardware"])), ("seed", escape(str(record["seed"]))),
        ("git commit", f"<code>{escape(str(record['environment'].get('git_commit') or 'unknown'))}</code>"),
        ("started / finished (UTC)", escape(f"{record['started_at']} / {record['finished_at']}")),
        ("record file (in the results folder)", f"<code>{escape(row['source'])}</code>"),
    ]
    parts.append(_kv(summary_rows))
    if curve is not None:  # right under the summary: whether the run learned is the first question
        parts += ["<h2>Training curve</h2>", f'<figure><img src="{escape(root + curve)}" alt="training loss and val metric per epoch">'
                  "<figcaption>Train loss and the val main metric per epoch; dotted: the epoch selected on val. "
                  "Every figure is under Training below.</figcaption></figure>"]
    if record.get("error"):
        error = record["error"]
        parts += ["<h2>Error</h2>", f"<p>{escape(str(error.get('type')))}: {escape(str(error.get('message')))}</p>"]
        if error.get("traceback"):
            parts.append(f"<pre>{escape(str(error['traceback']))}</pre>")
    parts += ["<h2>Components</h2>", _components(record["components"])]
    parts += ["<h2>Hardware and software</h2>", _value(record["environment"])]
    if record["metrics"]:
        parts += ["<h2>Metrics</h2>", _metrics(record["metrics"])]
    if record["selection"]:
        parts += ["<h2>Checkpoint selection</h2>", _value(record["selection"])]
    if record["cost"]:
        parts += ["<h2>Cost</h2>", _value(record["cost"])]
    if record["training"]:
        parts += ["<h2>Training</h2>", _training(record["training"], record["selection"])]
    parts += ["<h2>Dataset</h2>", _value(record["dataset"])]
    parts += ["<h2>Config</h2>", f"<pre>{escape(json.dumps(record['config'], indent=2, sort_keys=True, ensure_ascii=False))}</pre>"]
    whole = json.dumps(record, indent=1, ensure_ascii=False)
    parts += ["<details><summary>The whole record (JSON)</summary>", f"<pre>{escape(whole)}</pre></details>"]
    return _page(f"{record['label']} ({record['run_id']})", root, "\n".join(parts))


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _components(components: Mapping[str, Any]) -> str:
    headers = ["kind", "name", "plugin", "distribution", "version", "weights", "options"]
    rows = []
    for kind, block in components.items():
        block = _dict(block)
        cells = [kind, *(block.get(k) for k in ("name", "plugin", "distribution", "version", "weights"))]
        options = json.dumps(block.get("options", {}), sort_keys=True)
        rows.append("<tr>" + "".join(f"<td>{escape(_scalar(c))}</td>" for c in cells) + f"<td><code>{escape(options)}</code></td></tr>")
    head = "".join(f'<th scope="col">{h}</th>' for h in headers)
    return f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody></table></div>"


def _metrics(metrics: Mapping[str, Any]) -> str:
    parts = []
    for split, block in _dict(metrics.get("splits")).items():
        block = _dict(block)
        values, units, chance, ci = (_dict(block.get(k)) for k in ("values", "units", "chance", "ci95"))
        rows = []
        for name, value in values.items():
            interval = ci.get(name)
            interval = f"{_scalar(interval[0])} to {_scalar(interval[1])}" if isinstance(interval, list) and len(interval) == 2 else "—"
            main = " (main)" if name == block.get("main") else ""
            ref = reference(block, name)  # chance, else the best named baseline, labelled
            cells = [f"{name}{main}", _scalar(value), _scalar(units.get(name, "")), interval,
                     "—" if ref is None else _scalar(ref[1]) if ref[0] == "chance" else f"{_scalar(ref[1])} ({ref[0]})"]
            rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
        parts += [f"<h3>{escape(str(split))}</h3>", '<div class="table-wrap"><table>\n<thead><tr><th scope="col">metric</th>'
                  '<th scope="col">value</th><th scope="col">unit</th><th scope="col">95% CI</th><th scope="col">chance or baseline</th></tr></thead>\n'
                  "<tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>"]
        if block.get("details"):
            parts += ["<details><summary>details</summary>", _value(block["details"]), "</details>"]
    return "\n".join(parts)


def _training(training: Mapping[str, Any], selection: Mapping[str, Any]) -> str:
    """A summary of the curve (first and last epoch, the selected one) and the curve itself."""
    curve = [row for row in training.get("curve") or [] if isinstance(row, Mapping)]
    facts = [(k, escape(_scalar(v))) for k, v in training.items() if k != "curve"]
    if curve:
        facts += [
            ("train loss, first → last epoch", escape(f"{_scalar(curve[0].get('train_loss'))} → {_scalar(curve[-1].get('train_loss'))}")),
            ("selected epoch (on val)", escape(
                f"{_scalar(selection.get('best_epoch'))}: {_scalar(selection.get('metric'))} = {_scalar(selection.get('best_value'))}"
            )),
        ]
    parts = [_kv(facts)]
    if curve:
        parts += [f"<details><summary>Per-epoch curve ({len(curve)} epochs)</summary>", _value(curve), "</details>"]
    return "\n".join(parts)


def _kv(rows: Sequence[tuple[str, str]]) -> str:
    """A key/value table; values are HTML already, keys are escaped here."""
    return '<table class="kv">' + "".join(f'<tr><th scope="row">{escape(k)}</th><td>{v}</td></tr>' for k, v in rows) + "</table>"


def _value(value: Any) -> str:
    """Any JSON value as HTML: objects as key/value tables, lists of objects as tables."""
    if isinstance(value, Mapping):
        return _kv([(str(k), _value(v)) for k, v in value.items()]) if value else "—"
    if isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
        keys = list(dict.fromkeys(k for v in value for k in v))
        head = "".join(f'<th scope="col">{escape(str(k))}</th>' for k in keys)
        rows = ["<tr>" + "".join(f"<td>{_value(v.get(k))}</td>" for k in keys) + "</tr>" for v in value]
        return f'<div class="table-wrap"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n' + "\n".join(rows) + "\n</tbody></table></div>"
    if isinstance(value, list):
        return escape(", ".join(_scalar(v) if not isinstance(v, (Mapping, list)) else json.dumps(v) for v in value)) or "—"
    return escape(_scalar(value))


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
