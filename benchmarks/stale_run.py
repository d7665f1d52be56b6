"""Stale results, end to end through the CLI: a plugin release makes its old record stale.

The example plugin (examples/vlbench-example-plugin) is "installed" as version 0.1.0 in a
scratch site folder (a dist-info with its entry points, its source on PYTHONPATH), and its
suite runs once. The plugin is then released as 0.1.1 (the dist-info's version changes, as
``pip install`` of a new release would leave it). ``vlbench run --dry-run`` must name the run
stale and say why; ``vlbench run`` must run it again and move the old record to
``<results>/example/stale/``, unchanged. Every command's output is printed.

    python benchmarks/stale_run.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "vlbench-example-plugin"
DIST = "vlbench_example_plugin"
ENTRY_POINTS = "[vlbench]\nvlbench_example_plugin.encoder = vlbench_example_plugin.encoder\nvlbench_example_plugin.task = vlbench_example_plugin.task\n"


def install(site: Path, version: str) -> None:
    """The dist-info pip leaves for one release; an older one is removed (an upgrade)."""
    for old in site.glob(f"{DIST}-*.dist-info"):
        for file in old.iterdir():
            file.unlink()
        old.rmdir()
    info = site / f"{DIST}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: vlbench-example-plugin\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)


def vlbench(args: list[str], env: dict[str, str]) -> str:
    command = [sys.executable, "-m", "vlbench.cli", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    print(f"$ vlbench {' '.join(args)}   (exit {done.returncode})")
    print("\n".join("  " + line for line in (done.stdout + done.stderr).strip().splitlines()[-12:]), flush=True)
    if done.returncode != 0:
        raise SystemExit(f"vlbench exited {done.returncode}")
    return done.stdout


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        site, results = work / "site", work / "results"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(EXAMPLE / "src")]), "OMP_NUM_THREADS": "1"}
        common = ["--results-dir", str(results), "--cache-dir", str(work / "cache"), "--runs-dir", ""]
        suite = str(EXAMPLE / "suites" / "example.toml")

        install(site, "0.1.0")
        vlbench(["run", suite, *common], env)
        (first,) = (results / "example").glob("*.json")
        before = first.read_bytes()
        print(f"record {first.name}: fingerprint {json.loads(before)['environment']['fingerprint']['parts']['task']}\n")

        install(site, "0.1.1")
        print("released vlbench-example-plugin 0.1.1\n")
        dry = vlbench(["run", suite, "--dry-run", *common], env)
        assert "stale" in dry and "0.1.1" in dry, "the dry run does not report the run as stale"
        vlbench(["run", suite, *common], env)

        (kept,) = (results / "example" / "stale").glob("*.json")
        after = json.loads(first.read_text())
        print(f"\nold record kept aside unchanged: {kept.relative_to(results)} ({kept.read_bytes() == before})")
        print(
            f"new record {first.name}: fingerprint {after['environment']['fingerprint']['parts']['task']}, "
            f"started {after['started_at']}"
        )
        assert kept.read_bytes() == before and "0.1.1" in after["environment"]["fingerprint"]["parts"]["task"]


if __name__ == "__main__":
    main()
