"""The CLI imports torch only for commands that need it (timings: benchmarks/cli_startup.py)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import sys
from vlbench.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("torch" in sys.modules)
"""


def _imports_torch(*argv: str) -> bool:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True, timeout=120, cwd=ROOT)
    return done.stdout.strip().splitlines()[-1] == "True"


def test_help_and_subcommand_help_start_without_torch():
    assert not _imports_torch("--help")
    assert not _imports_torch("plugins", "--help")
    assert not _imports_torch("run", "--help")  # the run flags (executors included) are declared without the engine


def test_leaderboard_show_reads_the_records_without_torch():
    # From the checkout, whose suites/ folder would expand (every plugin, torch) if show listed missing runs unasked.
    assert not _imports_torch("leaderboard", "show", str(ROOT / "leaderboard" / "results"))


def test_the_probe_sees_torch_when_a_command_needs_it():
    assert _imports_torch("plugins")  # loads every plugin, so the check above can fail
