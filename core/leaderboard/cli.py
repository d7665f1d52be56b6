"""`vlbench leaderboard build|publish|show|validate`: the argument parser and the commands.

Nothing heavy is imported until a command runs (pandas, matplotlib, Jinja2), so `vlbench --help`
stays fast.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from vlbench import folders

if TYPE_CHECKING:
    from vlbench.leaderboard.output import BuildResult

DEFAULT_RESULTS = folders.RESULTS
DEFAULT_OUT = folders.LEADERBOARD_OUT
DEFAULT_SUITES = folders.SUITES


def _report(result: BuildResult, console: Console, default: bool) -> None:
    from vlbench.leaderboard.columns import summary
    from vlbench.leaderboard.terminal import report_source

    board = result.board
    report_source(console, board, default)
    for source, problem in board.invalid:
        console.print(Text(f"skipped {board.results_dir / source}: {problem}", style="yellow"))
    for note in board.notes:
        console.print(Text(f"note: {note}"))
    console.print(Text(summary(board)))
    pages = sum(1 for f in result.files if f.suffix == ".html")
    console.print(Text(f"wrote {len(result.files)} files to {result.out}/ ({pages} pages); open {result.out / 'index.html'}"))


def _results_dir(args: argparse.Namespace) -> tuple[Path, bool]:
    """The folder to read, and whether it is the default one."""
    return (args.results_dir, False) if args.results_dir is not None else (DEFAULT_RESULTS, True)


def cmd_build(args: argparse.Namespace, console: Console) -> int:
    from vlbench.leaderboard.output import build

    results, default = _results_dir(args)
    _report(build(results, args.out, args.suites, args.include_noisy), console, default)
    return 0


def cmd_publish(args: argparse.Namespace, console: Console) -> int:
    from vlbench.leaderboard.output import publish

    results, default = _results_dir(args)
    _report(publish(results, args.out, args.suites, args.include_noisy), console, default)
    return 0


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    """The records alone, unless --missing or --suites asks for the runs the suite files declare."""
    from vlbench.leaderboard.tables import load
    from vlbench.leaderboard.terminal import report_source, show

    results, default = _results_dir(args)
    check_missing = args.missing or args.suites is not None
    board = load(results, args.suites, args.include_noisy, check_missing=check_missing)
    if not check_missing:
        board.notes.append(
            "Missing runs (declared by a suite file, no record) are not listed: add --missing to check the suite "
            f"files in {DEFAULT_SUITES}/, or --suites PATH (expanding suites loads every plugin: seconds)."
        )
    report_source(console, board, default)
    show(board, console, wide=args.wide, columns=args.columns.split(",") if args.columns else None)
    return 0


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    """Check every record file against the record schema; 2 when any is invalid."""
    from vlbench.results import RecordError, read_record
    from vlbench.sanitize import terminal_text

    results, _ = _results_dir(args)
    files = sorted(p for p in Path(results).rglob("*.json") if not p.name.startswith("."))
    bad = 0
    for path in files:
        try:
            read_record(path)
        except RecordError as exc:
            bad += 1
            console.print(Text(terminal_text(str(exc)), style="red"), soft_wrap=True)
    console.print(
        Text(
            f"{len(files) - bad} of {len(files)} record files in {results}/ follow the record schema "
            "(docs/leaderboard.md, Record schema)"
        )
    )
    return 2 if bad else 0


def add_leaderboard_parser(subparsers: Any) -> None:
    """Add ``vlbench leaderboard build|publish|show|validate`` to the CLI's subparsers."""
    parser = subparsers.add_parser("leaderboard", help="tables, plots and a static site from the result records")
    sub = parser.add_subparsers(dest="leaderboard_command", metavar="{build,publish,show,validate}", required=True)

    def command(name: str, purpose: str, func: Callable[[argparse.Namespace, Console], int]) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=purpose)
        p.add_argument(
            "results_dir",
            nargs="?",
            type=Path,
            default=None,
            help=f"folder of records; default: {DEFAULT_RESULTS} (where `vlbench run` writes); "
            f"the project's committed records: {folders.PROJECT_RESULTS}",
        )
        p.add_argument(
            "--include-noisy",
            action="store_true",
            help="let runs whose cost was measured on a busy machine into the Pareto fronts",
        )
        p.set_defaults(func=func)
        return p

    def suites_option(p: argparse.ArgumentParser, default: str) -> None:
        p.add_argument("--suites", type=Path, help=f"suite file or folder declaring the runs, to list missing ones; {default}")

    build = command("build", "write LEADERBOARD.md, leaderboard.csv and the static site", cmd_build)
    build.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder; default: {DEFAULT_OUT}")
    suites_option(build, f"default: {DEFAULT_SUITES}/ if it exists")
    publish = command("publish", "write the static site as a self-contained folder for any static host", cmd_publish)
    publish.add_argument("--out", type=Path, required=True, help="a new or empty folder (or an earlier publish output)")
    suites_option(publish, f"default: {DEFAULT_SUITES}/ if it exists")
    show = command("show", "print the leaderboard tables in the terminal", cmd_show)
    suites_option(show, "implies --missing; default: none (show reads the records alone)")
    show.add_argument(
        "--missing",
        action="store_true",
        help=f"also list the runs the suite files ({DEFAULT_SUITES}/ unless --suites) declare that have no record; "
        "expanding the suites loads every plugin, which takes seconds",
    )
    show.add_argument("--wide", action="store_true", help="every column, folded to fit, instead of what fits the terminal")
    show.add_argument("--columns", help="comma-separated columns to show, by key or header, e.g. 'model,main test,GMACs'")
    validate = sub.add_parser("validate", help="check record files against the record schema (exit 2 when any is invalid)")
    validate.add_argument(
        "results_dir", nargs="?", type=Path, default=None, help=f"folder of records; default: {DEFAULT_RESULTS}"
    )
    validate.set_defaults(func=cmd_validate)
