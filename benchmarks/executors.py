"""The devices executor against one worker, side by side, on a 4-run tiny suite.

Each round runs the same suite from empty results folders, each as its own ``vlbench run``
process (start-up included, as a user sees it): ``--executor local`` (this process, every
core to torch), ``--executor devices --devices cpu`` (one worker, every core),
``--devices cpu`` with the whole command held to one core (one worker on one core: one
"device", as one GPU is) and ``--devices cpu,cpu`` (two workers, one core each). Prints each
wall time and two ratios:

* per device: two workers / one worker on one core, the scaling the issue's targets measure
  (on CPU <= 0.65 for 2 workers; on GPUs >= 0.8 N speed-up, i.e. <= 0.625 for 2);
* against one worker on every core: what `--devices cpu,cpu` saves a user over the default on
  this machine. Splitting cores between workers only pays where a run cannot use them all;
  torch's intra-op threads already use both cores well on the tiny suite's convolutions.
On a GPU machine, ``--devices cuda:0,cuda:1`` against ``--devices cuda:0`` with ``--suite``
suites/person_search.toml gives the multi-GPU speed-up (target >= 0.8 N).

    python benchmarks/executors.py                 # 1 round on the CPUs
    python benchmarks/executors.py --rounds 3
    python benchmarks/executors.py --no-local       # only the two devices legs the ratio needs
    python benchmarks/executors.py --suite suites/person_search.toml --one cuda:0 --many cuda:0,cuda:1
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET = 0.65
TINY = """
[suite]
name = "executors_bench"
seeds = [0, 1]

[train]
epochs = 2
batch_size = 32
max_steps_per_epoch = 12
eval_batch_size = 128
cost_batch_sizes = [1, 16]
cost_budget_s = 0.3

[defaults.vision]
image_size = [64, 32]

[[tasks]]
name = "person_search"
options = { bootstrap = 100 }
dataset_options = { identities = [200, 50, 50], views_per_identity = 2, image_size = [64, 32] }

[[vision]]
name = "timm:resnet10t"
[[vision]]
name = "convnext_atto"

[[text]]
name = "clip_text"
options = { width = 128, layers = 2, heads = 4, context_length = 48 }

[[fusions]]
name = "contrastive"
options = { embed_dim = 128 }
"""


def timed_run(
    suite: Path, work: Path, name: str, flags: list[str], loads: list[float] | None = None, cores: list[int] | None = None
) -> float:
    """One ``vlbench run`` process's wall time (held to ``cores`` when given, through taskset);
    ``loads`` gets the 1-minute load average after it."""
    results = work / f"results-{name}-{time.monotonic_ns()}"
    command = [sys.executable, "-m", "vlbench.cli", "run", str(suite), "--results-dir", str(results), "--runs-dir", "", *flags]
    if cores:
        command = ["taskset", "--cpu-list", ",".join(map(str, cores)), *command]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "VLBENCH_CACHE": str(work / "cache")})
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{name} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    if loads is not None:
        loads.append(os.getloadavg()[0])
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", type=Path, help="default: a 4-run tiny CPU suite")
    parser.add_argument("--one", default="cpu", help="the single worker's device (default cpu)")
    parser.add_argument("--many", default="cpu,cpu", help="the workers' devices (default cpu,cpu)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--no-local", action="store_true", help="skip the --executor local reference (the ratio is two workers / one)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        suite = args.suite or work / "tiny.toml"
        if args.suite is None:
            suite.write_text(TINY)
        # Generate the dataset and warm the file cache once, outside the timings.
        timed_run(suite, work, "warm-up", ["--shard", "1/4"])
        walls: dict[str, list[float]] = {"local": [], "one": [], "one-core": [], "many": []}
        first_core = sorted(os.sched_getaffinity(0))[:1]
        loads = {name: [] for name in walls}  # the 1-minute load average after each: other users' work shows here
        before = os.getloadavg()
        for _ in range(args.rounds):
            if not args.no_local:
                walls["local"].append(timed_run(suite, work, "local", [], loads["local"]))
            walls["one"].append(timed_run(suite, work, "one", ["--executor", "devices", "--devices", args.one], loads["one"]))
            if args.one == "cpu":
                one_core = ["--executor", "devices", "--devices", "cpu"]
                walls["one-core"].append(timed_run(suite, work, "one-core", one_core, loads["one-core"], first_core))
            walls["many"].append(timed_run(suite, work, "many", ["--executor", "devices", "--devices", args.many], loads["many"]))
    workers = len(args.many.split(","))
    median = {k: statistics.median(v) for k, v in walls.items() if v}
    print(
        f"cores usable: {len(os.sched_getaffinity(0))}; load average (1/5/15 min) before: "
        f"{' / '.join(f'{x:.1f}' for x in before)}, after: {' / '.join(f'{x:.1f}' for x in os.getloadavg())}; "
        f"above {len(os.sched_getaffinity(0))} means other work shared the cores and inflated the walls"
    )
    for name, label in (
        ("local", "local (1 process)"),
        ("one", f"devices --devices {args.one}"),
        ("one-core", "devices --devices cpu, on 1 core"),
        ("many", f"devices --devices {args.many}"),
    ):
        if name not in median:
            continue
        print(
            f"{label:<36}: {median[name]:7.1f} s  (walls {', '.join(f'{w:.1f}' for w in walls[name])}; "
            f"load after {', '.join(f'{x:.1f}' for x in loads[name])})"
        )
    if "one-core" in median:
        print(
            f"per device: {workers} workers / 1 worker on 1 core: {median['many'] / median['one-core']:.2f} (target <= {TARGET})"
        )
    vs_local = f"; against local: {median['many'] / median['local']:.2f}" if "local" in median else ""
    print(f"against 1 worker on every core: {median['many'] / median['one']:.2f}{vs_local}")


if __name__ == "__main__":
    main()
