"""Where a suite's runs execute: one interface over the engines users already have.

``local`` (default) runs them in this process one after another; ``devices`` runs one worker
process per device of this machine; ``slurm`` submits a job array through submitit; and
``--shard K/N`` takes every N-th run for any other launcher (a Kubernetes indexed job, a
plain job array). Every executor runs each run through :func:`._common.run_claimed` (claim,
skip if finished, run, write the record), so records, resume and claims are the same
whichever ran them, and any mix of executors sharing a results folder trains each run once.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from vlbench.errors import UserError
from vlbench.executors._common import Job

if TYPE_CHECKING:  # the engine pulls in torch; `vlbench --help` reads this module's flags without it
    from vlbench.engine import Reporter, SuiteOutcome
    from vlbench.types.runs import RunSpec

EXECUTORS = ("local", "devices", "slurm")


class Executor(Protocol):
    @property
    def name(self) -> str:
        """The executor's name, as --executor spells it."""

    def describe(self) -> str:
        """Where the runs go, for the line printed before they start."""

    def run(self, runs: Sequence[RunSpec], job: Job, host: Any, reporter: Reporter, warn: Callable[[str], Any]) -> SuiteOutcome:
        """Run every pending run of ``runs`` (claimed, resumable) and return what happened."""


def parse_shard(text: str) -> tuple[int, int]:
    """``K/N`` with 1 <= K <= N -> (K, N); a UserError otherwise."""
    k, slash, n = text.partition("/")
    if not (slash and k.strip().isdigit() and n.strip().isdigit() and 1 <= int(k) <= int(n)):
        raise UserError(
            f"--shard {text}: expected K/N with 1 <= K <= N (shard K of N, counted from 1), e.g. --shard 1/4 "
            "... --shard 4/4; with a 0-based index such as $JOB_COMPLETION_INDEX use $((index + 1))/N."
        )
    return int(k), int(n)


def select_shard(runs: Sequence[RunSpec], k: int, n: int) -> list[RunSpec]:
    """Shard K of N: every N-th run in run-id order, starting at the K-th. Depends only on the
    run ids, so every process computes the same split, the N shards cover each run exactly
    once, and their sizes differ by at most one. The suite's own order is kept within a shard."""
    mine = set(sorted(run.run_id for run in runs)[k - 1 :: n])
    return [run for run in runs if run.run_id in mine]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("executors (docs/executors.md)")
    group.add_argument("--executor", default="local", help=f"where runs execute: {', '.join(EXECUTORS)}; default: local")
    group.add_argument("--devices", help="devices executor: cuda:0,cuda:1,... or all (every CUDA device) or cpu,cpu")
    group.add_argument("--shard", help="run only shard K of N (K/N, 1 <= K <= N); the N shards cover every run once")
    from vlbench.executors.slurm import add_arguments as add_slurm

    add_slurm(group)


def from_args(args: argparse.Namespace, suite_path: Path) -> Executor:
    """The executor the command line asks for, fully checked: every mistake is a UserError
    here, before anything runs or is written."""
    from vlbench.executors.slurm import slurm_flags_given

    if args.executor not in EXECUTORS:
        raise UserError(
            f"--executor {args.executor}: unknown executor; choose one of {', '.join(EXECUTORS)} (docs/executors.md)."
        )
    if args.devices is not None and args.executor != "devices":
        raise UserError(f"--devices is for --executor devices, not {args.executor}: add --executor devices or drop --devices.")
    if slurm_flags_given(args) and args.executor != "slurm":
        raise UserError(
            f"--slurm-* and --detach are for --executor slurm, not {args.executor}: add --executor slurm or drop them."
        )
    if args.executor == "local":
        from vlbench.executors.local import LocalExecutor

        return LocalExecutor()
    if args.executor == "devices":
        import torch

        from vlbench.executors.devices import DevicesExecutor, parse_devices

        return DevicesExecutor(parse_devices(args.devices or "all", torch.cuda.device_count))
    from vlbench.executors.slurm import SlurmExecutor

    return SlurmExecutor.from_args(args, suite_path)
