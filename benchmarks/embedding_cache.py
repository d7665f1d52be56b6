"""Text-tower forward passes on person_search-style runs, with and without the embedding cache.

Builds a miniature of suites/person_search.toml: its vision encoders (all, or the first
``--vision``), its frozen pretrained all_minilm_l6_v2 text tower and its contrastive fusion,
on a small synthetic pedestrian set at 64x32 for a few steps. Runs the suite twice in this
process, from empty results folders: with ``VLBENCH_EMBEDDING_CACHE=off``, then on (empty
cache folder). Counts the text tower's forward calls per run outside the cost measurement
(which always times the real tower), prints them and the records' rows from cache / computed,
and checks that every run's metrics are identical between the two.

    python benchmarks/embedding_cache.py               # all 10 vision encoders
    python benchmarks/embedding_cache.py --vision 4
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import tomllib
from pathlib import Path

import torch

from vlbench.engine import run_suite
from vlbench.manager import PluginHost
from vlbench.plugins.text._tokenize import BertTextEncoder
from vlbench.results import read_record
from vlbench.suite import load_suite
from vlbench.testing.counting import counting_forward_passes

PERSON_SEARCH = Path(__file__).resolve().parents[1] / "suites" / "person_search.toml"


def miniature(visions: int) -> str:
    """person_search.toml's components on a CPU-sized budget and dataset."""
    full = tomllib.loads(PERSON_SEARCH.read_text())
    (text,) = full["text"]
    (fusion,) = full["fusions"]

    def inline(table: dict) -> str:
        return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in table.items()) + " }"

    parts = [
        '[suite]\nname = "person_search_mini"\n',
        "[train]\nepochs = 2\nbatch_size = 32\nmax_steps_per_epoch = 3\neval_batch_size = 128\n"
        "cost_batch_sizes = [1]\ncost_budget_s = 0.05\n",
        "[defaults.vision]\nimage_size = [64, 32]\n",
        '[[tasks]]\nname = "person_search"\ndataset = "synthetic_pedestrians"\noptions = { bootstrap = 0 }\n'
        "dataset_options = { identities = [40, 20, 20], views_per_identity = 2, image_size = [64, 32] }\n",
        *(f'[[vision]]\nname = "{v["name"]}"\n' for v in full["vision"][:visions]),
        f'[[text]]\nname = "{text["name"]}"\nfreeze = {json.dumps(text.get("freeze", False))}\n',
        f'[[fusions]]\nname = "{fusion["name"]}"\noptions = {inline(fusion.get("options", {}))}\n',
    ]
    return "\n".join(parts)


def run_counting(suite: Path, host, results: Path, cache: Path) -> tuple[list[int], list[dict], float]:
    """Forward passes of the text tower per run (cost measurement excluded), the records, the wall."""
    counts, records = [], []
    start = time.perf_counter()
    with counting_forward_passes(BertTextEncoder) as passes:
        for run in load_suite(suite, host).runs:
            before = passes.calls
            outcome = run_suite([run], host, results, cache, torch.device("cpu"))
            counts.append(passes.calls - before)
            records.append(read_record(outcome.records[0]))
            print(
                f"  {'cached  ' if os.environ.get('VLBENCH_EMBEDDING_CACHE') != 'off' else 'uncached'} {run.label}: "
                f"{counts[-1]} text-tower forward passes ({records[-1]['status']})",
                flush=True,
            )
    return counts, records, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vision", type=int, default=10, help="how many of person_search's vision encoders (default all 10)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    host = PluginHost()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        suite = work / "person_search_mini.toml"
        suite.write_text(miniature(args.vision))
        os.environ["VLBENCH_EMBEDDING_CACHE"] = "off"
        plain_counts, plain, plain_wall = run_counting(suite, host, work / "plain", work / "cache")
        os.environ["VLBENCH_EMBEDDING_CACHE"] = "on"
        cached_counts, cached, cached_wall = run_counting(suite, host, work / "cached", work / "cache")
    print(
        f"person_search-style suite, {len(plain)} runs, frozen all_minilm_l6_v2 text tower, CPU 1 thread "
        f"(shared machine: walls inflated; load average now {os.getloadavg()[0]:.1f})"
    )
    print(f"{'run':<32} {'uncached':>9} {'cached':>7} {'rows from cache':>16} {'rows computed':>14}  metrics")
    for a, b, n_plain, n_cached in zip(plain, cached, plain_counts, cached_counts, strict=True):
        rows = b["training"].get("embedding_cache", {}).get("text", {})
        same = a["status"] == b["status"] and a.get("metrics") == b.get("metrics")
        status = "identical" if same else f"DIFFER ({a['status']} / {b['status']})"
        print(
            f"{b['label'][:32]:<32} {n_plain:>9} {n_cached:>7} {rows.get('rows_from_cache', '-'):>16} "
            f"{rows.get('rows_computed', '-'):>14}  {status}"
        )
    print(
        f"text-tower forward passes in total: uncached {sum(plain_counts)}, cached {sum(cached_counts)} "
        f"(after the first run: {sum(cached_counts[1:])}); suite wall {plain_wall:.0f} s uncached, {cached_wall:.0f} s cached"
    )


if __name__ == "__main__":
    main()
