"""The leaderboard's plots (SVG, matplotlib): quality against each cost axis per table, and
each run's training curve.

Quality plots: the main test metric with its 95% CI against params, GMACs and batch-1
latency, one panel each (two to a row, the legend in a panel of its own), the chance level
dashed, the Pareto front (as the table computes it) in red. Every point is named by what
tells it apart within its table (:func:`vlbench.leaderboard.columns.distinguishing_names`); runs not
above chance and runs with noisy cost are drawn apart and said so in the legend.

Fixed ids and no date: identical records give identical files. Text stays text (matplotlib
XML-escapes it) and ``parse_math=False`` keeps a "$" in a name from being read as TeX.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator, NullLocator

from vlbench.leaderboard.columns import distinguishing_names
from vlbench.leaderboard.tables import COST_AXES, Leaderboard, Partition, page_path, slug

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

STYLE: dict[RcKeyType, Any] = {"svg.fonttype": "none", "svg.hashsalt": "vlbench", "font.size": 10}
PANEL = (6.4, 4.6)  # inches per panel
# Where a name goes relative to its point, tried in turn until it overprints no name placed.
OFFSETS = ((6, 5, "left"), (6, -12, "left"), (-6, 5, "right"), (-6, -12, "right"), (6, 16, "left"), (-6, 16, "right"))


def write_plots(board: Leaderboard, out: Path) -> dict[str, str]:
    """One SVG per table (keyed by the partition's slug) and one training curve per run (keyed
    by the run's page path); values are paths relative to ``out``."""
    written = {}
    for part in board.partitions():
        name = f"plots/{part.slug}.svg"
        if _quality_plot(board, part, out / name):
            written[part.slug] = name
    for row in board.runs.to_dict("records"):
        name = f"plots/runs/{slug(row['suite'])}/{slug(row['run id'])}.svg"
        if _curve_plot(board.record(row), out / name):
            written[page_path(row)] = name
    return written


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg", metadata={"Date": None})


def _quality_plot(board: Leaderboard, part: Partition, path: Path) -> bool:
    """False when no run of the partition has a cost figure."""
    axes_shown = [(column, axis) for column, axis in COST_AXES if part.rows[column].notna().any()]
    if not axes_shown:
        return False
    rows = part.rows.copy()
    rows["_name"], shared = distinguishing_names([board.record(r) for r in rows.to_dict("records")])
    first = rows.iloc[0]
    unit = f" ({first['main unit']})" if first["main unit"] else ""
    ncols = 1 if len(axes_shown) == 1 else 2
    nrows = math.ceil((len(axes_shown) + 1) / ncols) if ncols == 2 else 1
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(PANEL[0] * ncols, PANEL[1] * nrows + (0.9 if ncols == 1 else 0)))
        grid = fig.subplots(nrows, ncols, squeeze=False).ravel()
        fig.subplots_adjust(
            left=0.08 if ncols == 2 else 0.13,
            right=0.97,
            bottom=0.08 if nrows > 1 else 0.24,
            top=0.92 if nrows > 1 else 0.88,
            wspace=0.2,
            hspace=0.28,
        )
        for ax, (column, axis) in zip(grid, axes_shown, strict=False):
            _panel(ax, rows[rows[column].notna()], column, axis)
            ax.set_ylabel(f"{first['main metric']} test{unit}", parse_math=False)
        legend: dict[str, Any] = {}
        for ax in grid[: len(axes_shown)]:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                legend.setdefault(label, handle)
        for ax in grid[len(axes_shown) :]:
            ax.axis("off")
        if len(grid) > len(axes_shown):  # the spare panel holds the legend and what every run shares
            grid[-1].legend(
                legend.values(), legend.keys(), loc="center", frameon=False, title=f"every run: {shared}" if shared else None
            )
        else:
            fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=3, frameon=False)
        fig.suptitle(part.title, parse_math=False, fontsize=12)
        _save(fig, path)
    return True


def _panel(ax: Any, rows: Any, column: str, axis: str) -> None:
    x, y = rows[column], rows["main test"]
    low, high = rows["CI95 low"].fillna(y), rows["CI95 high"].fillna(y)
    error = [(y - low).clip(lower=0), (high - y).clip(lower=0)]
    random_init = rows["random-init"].astype(bool)
    below = ~rows["above chance"].astype(bool)
    noisy = rows["noisy cost"] != ""
    groups = (
        (~random_init & ~below, "pretrained or loaded weights", dict(marker="o", color="C0", mfc="C0")),
        (random_init & ~below, "random-init", dict(marker="o", color="C0", mfc="none")),
        (below, "not above chance (never Pareto-optimal)", dict(marker="X", color="0.5", mfc="0.5")),
    )
    for mask, label, style in groups:
        if mask.any():
            ax.errorbar(x[mask], y[mask], yerr=[e[mask] for e in error], fmt="none", ecolor="0.6", elinewidth=0.9, capsize=2)
            ax.plot(x[mask], y[mask], ls="none", ms=7, label=label, **style)
    if noisy.any():
        ax.plot(
            x[noisy],
            y[noisy],
            ls="none",
            marker="o",
            ms=13,
            mfc="none",
            mec="C1",
            mew=1.5,
            label="noisy cost: busy machine (left off the front)",
        )
    front = rows[rows["Pareto-optimal on"].str.split(", ").map(lambda axes: axis in axes)].sort_values(column)
    if not front.empty:
        ax.plot(
            front[column],
            front["main test"],
            drawstyle="steps-post" if rows["higher is better"].all() else "default",
            color="C3",
            lw=1.3,
            marker="o",
            ms=11,
            mfc="none",
            mec="C3",
            label="Pareto front",
        )
    for i, chance in enumerate(sorted(set(rows["chance"].dropna()))):
        ax.axhline(chance, ls="--", lw=0.9, color="0.45", label=None if i else "chance level (or best baseline)")
    positive = x[x > 0]
    log = len(positive) == len(x) and len(x) > 0 and positive.max() > 20 * positive.min()
    if log:  # ticks at 1-2-5 with plain labels: readable, and no TeX layout of 10^n
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax.xaxis.set_minor_locator(NullLocator())
    ax.margins(x=0.08, y=0.1)
    _name_points(ax, rows, column, np.log10(x) if log else x, y)
    ax.set_xlabel(column + (", batch 1" if column.startswith("latency") else ""))
    ax.grid(alpha=0.3, lw=0.5)


def _name_points(ax: Any, rows: Any, column: str, x: Any, y: Any) -> None:
    """Every point named; each name takes the first offset that overprints no name placed
    (positions compared in axis fractions, a name taken as about 0.2 wide and 0.06 high)."""
    span = lambda v: (v.max() - v.min()) or 1.0  # noqa: E731
    placed: list[tuple[float, float, float]] = []  # left, bottom, right of names placed, in axis fractions
    for index, run in rows.sort_values("main test", ascending=False).iterrows():
        at = ((x[index] - x.min()) / span(x), (y[index] - y.min()) / span(y))
        width = 0.012 * len(run["_name"])
        offsets = sorted(OFFSETS, key=lambda o: o[2] == "left") if at[0] > 0.6 else OFFSETS  # near the right edge: leftwards
        for dx, dy, ha in offsets:
            left = at[0] + dx / 400 - (width if ha == "right" else 0)
            bottom = at[1] + dy / 300
            if not any(abs(bottom - b) < 0.06 and left < right and left + width > lft for lft, b, right in placed):
                break
        placed.append((left, bottom, left + width))
        ax.annotate(
            run["_name"],
            (run[column], run["main test"]),
            xytext=(dx, dy),
            textcoords="offset points",
            ha=ha,
            fontsize=8.5,
            parse_math=False,
        )


def _curve_plot(record: Mapping[str, Any], path: Path) -> bool:
    """Training loss and the val main metric per epoch, the selected epoch marked; False when
    the record has no per-epoch curve."""
    curve = [row for row in (record.get("training") or {}).get("curve") or [] if isinstance(row, Mapping)]
    if not curve:
        return False
    epochs = [row.get("epoch") for row in curve]
    val_key = next((k for k in curve[0] if k.startswith("val_")), None)
    selection = record.get("selection") or {}
    test = ((record.get("metrics") or {}).get("splits") or {}).get("test") or {}
    chance = (test.get("chance") or {}).get(test.get("main"))
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(11, 3.8))
        loss_ax, val_ax = fig.subplots(1, 2)
        fig.subplots_adjust(left=0.07, right=0.98, bottom=0.16, top=0.86, wspace=0.25)
        loss_ax.plot(epochs, [row.get("train_loss") for row in curve], marker="o", color="C0")
        loss_ax.set(xlabel="epoch", ylabel="train loss (mean over the epoch)")
        if val_key is not None:
            val_ax.plot(epochs, [row.get(val_key) for row in curve], marker="o", color="C2", label=f"{val_key[4:]} on val")
            val_ax.set(xlabel="epoch", ylabel=f"{val_key[4:]} val")
            if isinstance(chance, (int, float)):
                val_ax.axhline(chance, ls="--", lw=0.9, color="0.45", label="chance level (test)")
        best = selection.get("best_epoch")
        for ax in (loss_ax, val_ax):
            if isinstance(best, int):
                ax.axvline(best, color="C3", lw=1, ls=":", label="selected epoch (val)" if ax is val_ax else None)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3, lw=0.5)
        val_ax.legend(frameon=False, fontsize=8.5)
        fig.suptitle(f"Training curve: {record.get('label')}", parse_math=False, fontsize=12)
        _save(fig, path)
    return True
