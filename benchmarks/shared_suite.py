"""N `vlbench run` processes on one suite and one results folder, side by side with one process.

Prints, for a tiny 6-run suite (random-init resnet10t + a 1-layer CLIP text tower, 2 steps,
synthetic pedestrians): the wall time of one process, the wall time of N processes started
together on a fresh results folder, how many runs they trained in total (the sum of their
"N ok"; each run should be trained once, so 6) and the ratio to N x the single-process time
(before per-run claims, N processes trained every run N times).

    python benchmarks/shared_suite.py [--processes 4] [--runs 6]

Every process pays Python's and the plugins' import time (about 10 s here); on a machine
shared with other work the times are inflated, the trained-run count is not.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SUITE = """
[suite]
name = "shared"
seeds = {seeds}
device = "cpu"

[train]
epochs = 1
batch_size = 8
max_steps_per_epoch = 2
eval_batch_size = 64
cost_batch_sizes = [1]
cost_budget_s = 0.05

[[tasks]]
name = "person_search"
options = {{ bootstrap = 10 }}
dataset_options = {{ identities = [6, 4, 4], views_per_identity = 2, image_size = [64, 32] }}

[[vision]]
name = "timm:resnet10t"
image_size = [64, 32]

[[text]]
name = "clip_text"
options = {{ width = 32, layers = 1, heads = 2, context_length = 16 }}

[[fusions]]
name = "contrastive"
options = {{ embed_dim = 16 }}
"""


def start(folder: Path, results: str) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "vlbench.cli",
        "run",
        str(folder / "suite.toml"),
        "--results-dir",
        str(folder / results),
        "--cache-dir",
        str(folder / "cache"),
        "--runs-dir",
        "",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(procs: list[subprocess.Popen]) -> int:
    trained = 0
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a vlbench process failed ({proc.returncode}):\n{out}")
        trained += int(re.search(r"(\d+) ok,", " ".join(out.split())).group(1))
    return trained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--runs", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "suite.toml").write_text(SUITE.format(seeds=list(range(args.runs))))
        subprocess.run(
            [sys.executable, "-m", "vlbench.cli", "run", str(folder / "suite.toml"), "--dry-run"], check=True, capture_output=True
        )  # imports warm in the page cache before either timing
        begin = time.perf_counter()
        single_trained = finish([start(folder, "single")])
        single = time.perf_counter() - begin
        begin = time.perf_counter()
        shared_trained = finish([start(folder, "shared") for _ in range(args.processes)])
        shared = time.perf_counter() - begin
    print(f"cpus usable: {len(os.sched_getaffinity(0))}, load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"1 process : {single_trained} runs trained, {single:.0f} s")
    print(f"{args.processes} processes: {shared_trained} runs trained in total (target {args.runs}), {shared:.0f} s")
    print(
        f"time ratio to {args.processes} x single: {shared / (args.processes * single):.2f} "
        f"(without claims every process trained every run: about 1.0 or worse)"
    )


if __name__ == "__main__":
    main()
