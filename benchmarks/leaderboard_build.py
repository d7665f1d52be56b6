"""Time ``vlbench leaderboard build`` on synthetic-but-valid records.

Writes N records (default 1,000) into a temporary results folder: 2 suites, 3 tasks,
3 hardware classes, 40 vision encoders, several seeds, 5% failed runs, full cost blocks
shaped as vlbench.cost.measure() writes them. Then builds the leaderboard (validation,
tables, markdown, csv, plots, site) once and prints the wall and CPU time.

    python benchmarks/leaderboard_build.py
    python benchmarks/leaderboard_build.py --records 5000 --keep /tmp/board   # keep the output to look at
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

from vlbench import leaderboard
from vlbench.results import SCHEMA_VERSION, problems

TASKS = {
    "person_search": ("synthetic_pedestrians", "R1"),
    "multilabel": ("synthetic_scenes", "mAP"),
    "alignment": ("synthetic_pairs", "R@1"),
}
HARDWARE = [
    ("NVIDIA H100 80GB HBM3", "bf16", "cuda"),
    ("NVIDIA A100-SXM4-40GB", "bf16", "cuda"),
    ("Intel(R) Xeon(R) Platinum 8480+", "fp32", "cpu"),
]
SUITES = {"study_a": ["person_search", "alignment"], "study_b": ["multilabel"]}


def _timed(p50: float) -> dict[str, Any]:
    return {
        "p50_ms": p50,
        "p90_ms": p50 * 1.2,
        "p99_ms": p50 * 1.6,
        "mean_ms": p50 * 1.05,
        "min_ms": p50 * 0.9,
        "iterations": 50,
        "warmup_iterations": 5,
        "budget_s": 1.0,
    }


def record(i: int, rng: random.Random) -> dict[str, Any]:
    suite = rng.choice(sorted(SUITES))
    task = rng.choice(SUITES[suite])
    dataset, main = TASKS[task]
    device_name, precision, device = rng.choice(HARDWARE)
    vision = f"encoder_{rng.randrange(40):02d}"
    seed = rng.randrange(5)
    weights = rng.choice(["pretrained", "random-init"])
    params = rng.uniform(2e6, 90e6)
    macs = int(params * rng.uniform(20, 200))
    value = rng.uniform(5, 80)
    ok = rng.random() > 0.05
    split = {
        "values": {main: value, "R5": min(100.0, value + 15)},
        "main": main,
        "chance": {main: 1.0, "R5": 5.0},
        "ci95": {main: [value - 2, value + 2]},
        "units": {main: "%", "R5": "%"},
        "details": {"n": 1000},
    }

    def component(name: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": name,
            "plugin": f"plugins.{name}",
            "distribution": "vlbench",
            "version": "0.1.0",
            "options": {},
            **extra,
        }

    data = {
        "schema_version": SCHEMA_VERSION,
        "run_id": f"{i:016x}",
        "suite": suite,
        "label": f"{vision}+clip_text+contrastive/{task}",
        "status": "ok" if ok else "error",
        "error": None if ok else {"type": "OutOfMemoryError", "message": "CUDA out of memory", "traceback": "..."},
        "components": {
            "vision": component(vision, weights=weights),
            "text": component("clip_text", weights=weights),
            "fusion": component("contrastive"),
            "task": component(task),
            "dataset": component(dataset),
        },
        "config": {"vision": {"name": vision, "options": {}}, "task": {"name": task, "options": {}}, "seed": seed},
        "metrics": {"main": main, "higher_is_better": True, "splits": {"val": split, "test": split}} if ok else {},
        "selection": {"split": "val", "metric": main, "best_epoch": 10, "best_value": value} if ok else {},
        "cost": {
            "params": {
                "unit": "parameters",
                "components": {"vision": {"trainable": int(params), "frozen": 0, "total": int(params)}},
                "total": {"trainable": int(params), "frozen": 0, "total": int(params)},
            },
            "flops": {
                "unit_flops": "FLOPs",
                "unit_macs": "MACs",
                "components": {"vision": {"flops": 2 * macs, "macs": macs}},
                "total": {"flops": 2 * macs, "macs": macs},
            },
            "latency": {"unit": "ms", "batch": 1, "vision": _timed(macs / 2e9), "model": _timed(macs / 1.5e9)},
            "throughput": {
                "unit": "images/s",
                "batches": [{"requested_batch": 64, "batch": 64, "oom_batches": [], "images_per_s": 6e11 / macs}],
            },
            "memory": {"unit": "bytes", "inference": {"measured": True, "unit": "bytes", "peak_bytes": int(params * 40)}},
            "fp16_size": {"bytes": int(params * 2), "mb": params * 2 / 1e6},
            "problems": [],
        }
        if ok
        else {},
        "training": {
            "epochs_run": 20,
            "steps": 2000,
            "wall_s": 600.0,
            "curve": [{"epoch": e, "train_loss": 4.0 / e, f"val_{main}": value * e / 20} for e in range(1, 21)],
        }
        if ok
        else {},
        "dataset": {"name": dataset, "synthetic": True},
        "environment": {
            "device": device,
            "device_name": device_name,
            "precision": precision,
            "torch": "2.4.0",
            "git_commit": "0" * 40,
        },
        "seed": seed,
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": f"2026-01-{1 + i % 28:02d}T00:00:00+00:00",
    }
    assert problems(data) == [], problems(data)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="build into this folder instead of a temporary one")
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results"
        for i in range(args.records):
            data = record(i, rng)
            path = results / data["suite"] / f"{data['run_id']}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(data), encoding="utf-8")
        out = args.keep or Path(tmp) / "site"
        start, cpu = time.perf_counter(), time.process_time()
        result = leaderboard.build(results, out, suites=results)  # no suite files: nothing declared, nothing missing
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    board = result.board
    print(
        f"{args.records} records -> {len(board.runs)} ranked runs, {len(board.failed)} failed, "
        f"{len(board.partitions())} tables, {sum(f.parent.name == 'plots' for f in result.files)} plots, "
        f"{sum(f.suffix == '.html' for f in result.files)} pages"
    )
    # CPU time too: on a shared machine the wall time says as much about the neighbours
    print(f"leaderboard build: {elapsed:.2f} s wall, {cpu:.2f} s CPU")


if __name__ == "__main__":
    main()
