"""How long the vlbench command takes to start, against a bare `python -c pass`, side by side.

Each command runs as a fresh process, the commands interleaved round by round so that a busy
machine slows them alike; the table shows each one's median wall time over the rounds, its
ratio to `python -c pass` and whether it imported torch (the CLI imports torch only for
commands that need it: `run`, `plugins`, `check-plugin`, ...). `leaderboard show` reads the
project's committed records from the checkout: by default the records alone, and with
`--missing` also the suite files under suites/, expanded to list declared runs without a record
(which loads every plugin, and so torch).

    python benchmarks/cli_startup.py               # 7 rounds
    python benchmarks/cli_startup.py --rounds 15
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "leaderboard" / "results"

# Runs the CLI in-process, then says whether torch got imported (on stderr, after the command's output).
PROBE = (
    "import sys\n"
    "from vlbench.cli import main\n"
    "try:\n"
    "    main(sys.argv[1:])\n"
    "except SystemExit:\n"
    "    pass\n"
    "print('TORCH', 'torch' in sys.modules, file=sys.stderr)\n"
)

COMMANDS = {  # name -> (argv, working folder)
    "python -c pass": ([sys.executable, "-c", "pass"], ROOT),
    "vlbench --help": ([sys.executable, "-c", PROBE, "--help"], ROOT),
    "vlbench plugins --help": ([sys.executable, "-c", PROBE, "plugins", "--help"], ROOT),
    "leaderboard show": ([sys.executable, "-c", PROBE, "leaderboard", "show", str(RECORDS)], ROOT),
    "leaderboard show --missing": ([sys.executable, "-c", PROBE, "leaderboard", "show", str(RECORDS), "--missing"], ROOT),
}


def once(argv: list[str], cwd: Path) -> tuple[float, bool | None]:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise SystemExit(f"{argv[3:] or argv}: exit {done.returncode}\n{done.stderr[-2000:]}")
    torch_line = [line for line in done.stderr.splitlines() if line.startswith("TORCH ")]
    return seconds, (torch_line[-1].endswith("True") if torch_line else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    torch_seen: dict[str, bool | None] = {}
    for name, (argv, cwd) in COMMANDS.items():  # one untimed round: the page cache holds every module afterwards
        torch_seen[name] = once(argv, cwd)[1]
    for _ in range(args.rounds):
        for name, (argv, cwd) in COMMANDS.items():
            times[name].append(once(argv, cwd)[0])
    base = statistics.median(times["python -c pass"])
    print(f"median of {args.rounds} rounds, commands interleaved; python {sys.version.split()[0]}")
    print(f"{'command':<28}{'median s':>10}{'min s':>8}{'x python':>10}  imports torch")
    for name, seconds in times.items():
        median = statistics.median(seconds)
        seen = torch_seen[name]
        print(
            f"{name:<28}{median:>10.3f}{min(seconds):>8.3f}{median / base:>10.1f}  {'-' if seen is None else 'yes' if seen else 'no'}"
        )


if __name__ == "__main__":
    main()
