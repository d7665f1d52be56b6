"""TensorBoard scalars for every finished run (a built-in ``vlbench_run_finished`` observer).

Writes ``<runs-dir>/<suite>/<run_id>/events.out.tfevents.*`` with

* ``train/loss`` and ``val/<metric>`` per epoch, from the record's ``training.curve``;
* ``final/val/<metric>`` and ``final/test/<metric>``: the selected checkpoint's metrics;
* ``cost/images_per_s/batch<n>``, ``cost/latency_ms/<part>``, ``cost/params``, ``cost/gmacs``.

The run's folder comes with the hook's ``context`` (``context.run_dir``, under
``vlbench run --runs-dir``, default ``./runs``); without a runs folder (``--runs-dir ""``,
``run_suite`` without ``runs_dir``) nothing is written. It is never stored in records. Needs the
``tensorboard`` package (a vlbench dependency); open with ``tensorboard --logdir runs``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlbench import hookimpl

if TYPE_CHECKING:
    from vlbench.types import RunContext


def scalars(record: dict[str, Any]) -> list[tuple[str, float, int]]:
    """(tag, value, step) for every scalar the record holds; step = epoch for curves, 0 otherwise."""
    out: list[tuple[str, float, int]] = []
    for row in record.get("training", {}).get("curve", []) or []:
        epoch = int(row.get("epoch", 0))
        for key, value in row.items():
            if key == "epoch" or not isinstance(value, (int, float)):
                continue
            if key == "train_loss":
                out.append(("train/loss", float(value), epoch))
            elif key.startswith("val_"):
                out.append((f"val/{key[4:]}", float(value), epoch))
            else:
                out.append((f"train/{key}", float(value), epoch))
    for split, block in (record.get("metrics", {}).get("splits") or {}).items():
        for key, value in block.get("values", {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.append((f"final/{split}/{key}", float(value), 0))
    cost = record.get("cost") or {}
    for entry in cost.get("throughput", {}).get("batches", []):
        if entry.get("images_per_s") is not None:
            out.append((f"cost/images_per_s/batch{entry['requested_batch']}", float(entry["images_per_s"]), 0))
    for part, stats in (cost.get("latency") or {}).items():
        if isinstance(stats, dict) and "p50_ms" in stats:
            out.append((f"cost/latency_ms/{part}", float(stats["p50_ms"]), 0))
    if cost.get("params"):
        out.append(("cost/params", float(cost["params"]["total"]["total"]), 0))
    if cost.get("flops"):
        out.append(("cost/gmacs", cost["flops"]["total"]["macs"] / 1e9, 0))
    return out


@hookimpl
def vlbench_run_finished(record: dict[str, Any], context: RunContext) -> None:
    if context.run_dir is None or record.get("status") != "ok":
        return
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

    writer = SummaryWriter(log_dir=str(context.run_dir))
    try:
        for tag, value, step in scalars(record):
            writer.add_scalar(tag, value, step)
        writer.add_text("run", f"{record['label']} ({record['run_id']})", 0)
    finally:
        writer.close()
