"""The interference detector on a quiet and an artificially loaded cost measurement, side by side.

One model (a random-init timm backbone through its vlbench plugin, with the quickstart's small CLIP-style
text tower and contrastive fusion), measured by ``vlbench.cost.measure`` twice in
one process: once as the machine is, once while ``--busy`` processes (default: twice the host's
cores) spin in pure-Python loops. For each it prints the raw conditions (load, other runnable
threads, steal, spread, calibration probe) and the named problems, then whether the detector
passed the quiet one and flagged the loaded one. The "quiet" measurement is only as quiet as
the machine: run it on an idle machine (the exit status is 1 when the loaded one passes or the
quiet one is flagged).

    OMP_NUM_THREADS=1 python benchmarks/interference.py
    python benchmarks/interference.py --model timm:resnet18 --image-size 128 --busy 8
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from typing import Any

import torch

from vlbench import cost as vlcost
from vlbench.data import resolve_precision
from vlbench.manager import PluginHost
from vlbench.objectives import VLModel


def spin(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def build(model_name: str, image_size: int) -> VLModel:
    host = PluginHost()
    vision = host.get("vision", model_name).factory(image_size=(image_size, image_size), pretrained=False, weights=None)
    text = host.get("text", "clip_text").factory(pretrained=False, weights=None, width=128, layers=2, heads=4, context_length=48)
    fusion = host.get("fusion", "contrastive").factory(vision=vision.info, text=text.info, num_classes=None, embed_dim=128)
    return VLModel({"vision": vision, "text": text, "fusion": fusion}).eval()


def measure(model: VLModel, budget_s: float) -> dict[str, Any]:
    precision = resolve_precision(torch.device("cpu"), "none", False)
    cost = vlcost.measure(model, precision, batch_sizes=(1, 8), budget_s=budget_s, cross_check=False, train_memory=False)
    return cost


def show(title: str, cost: dict[str, Any]) -> None:
    c = cost["conditions"]
    print(f"--- {title}")
    for when in ("before", "after"):
        print(
            f"  {when:6}: load_1min {c[when]['load_1min']:.2f} on {c['host_cores']} cores "
            f"({c['usable_cores']} usable, {c['timing_threads']} timing threads); other runnable threads {c[when]['other_runnable']}"
        )
    steal = "not reported" if c["steal_share"] is None else f"{c['steal_share']:.1%}"
    print(f"  steal {steal}; spread (worst p90/p50) {c['spread']['worst_p90_over_p50']} of {c['spread']['of']}")
    probe = c["probe"]
    print(
        f"  probe median/min ms: before {probe['before']['median_ms']:.3f}/{probe['before']['min_ms']:.3f}, "
        f"after {probe['after']['median_ms']:.3f}/{probe['after']['min_ms']:.3f}"
    )
    print(
        f"  latency.model p50 {cost['latency']['model']['p50_ms']:.2f} ms, p90 {cost['latency']['model']['p90_ms']:.2f} ms; "
        f"batch-8 {cost['throughput']['batches'][-1]['images_per_s']:.1f} img/s"
    )
    print(f"  noisy: {c['noisy']}; problems: {json.dumps([p['name'] + '=' + str(p['value']) for p in c['problems']])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="timm:resnet10t")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--budget", type=float, default=1.0, help="seconds per timed figure")
    parser.add_argument(
        "--busy", type=int, default=2 * (os.cpu_count() or 1), help="spinning processes during the loaded measurement"
    )
    args = parser.parse_args()
    model = build(args.model, args.image_size)
    measure(model, 0.2)  # first-call allocations and lazy initialisation out of the way
    quiet = measure(model, args.budget)
    stop_at = time.time() + 600
    workers = [multiprocessing.Process(target=spin, args=(stop_at,), daemon=True) for _ in range(args.busy)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(2.0)  # the load average and the run queue catch up with the spinners
        loaded = measure(model, args.budget)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.join()
    show("as the machine is (quiet only if nothing else runs)", quiet)
    show(f"loaded: {args.busy} spinning processes", loaded)
    ratio = loaded["latency"]["model"]["p50_ms"] / quiet["latency"]["model"]["p50_ms"]
    print(f"loaded / quiet latency.model p50: {ratio:.2f}x")
    ok = loaded["conditions"]["noisy"] and not quiet["conditions"]["noisy"]
    print(
        f"detector: loaded {'flagged' if loaded['conditions']['noisy'] else 'PASSED (missed)'}, "
        f"quiet {'FLAGGED' if quiet['conditions']['noisy'] else 'passed'} -> {'as expected' if ok else 'not as expected'}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
