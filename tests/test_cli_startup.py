"""The CLI imports torch only for commands that need it (timings: benchmarks/cli_startup.py)."""

import subprocess
import sys

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
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True, timeout=120)
    return done.stdout.strip().splitlines()[-1] == "True"


def test_help_and_subcommand_help_start_without_torch():
    assert not _imports_torch("--help")
    assert not _imports_torch("plugins", "--help")
    assert not _imports_torch("run", "--help")  # the run flags (executors included) are declared without the engine


def test_the_probe_sees_torch_when_a_command_needs_it():
    assert _imports_torch("plugins")  # loads every plugin, so the check above can fail
