"""The vlbench command: train, test and measure the cost of encoder combinations; tabulate them.

Every command imports torch (and the engine) only when it runs: ``vlbench --help`` and the
leaderboard start without it (benchmarks/cli_startup.py).

Exit status: 0 all runs succeeded, 1 some runs failed (their error records are written) or a
result could not be saved (the suite stopped), 2 bad input (nothing was run or written),
130 interrupted (finished runs are kept).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from rich.console import Console

from vlbench import checkplugin, folders, plugins_command, pretrained, run_command, scaffold
from vlbench.errors import UserError
from vlbench.leaderboard.cli import add_leaderboard_parser


def cmd_cache(args: argparse.Namespace, console: Console) -> int:
    from vlbench.embedding_cache import report_store

    return report_store(args.cache_dir, args.action, console)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vlbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(
        dest="command", metavar="{run,plugins,cache,weights,leaderboard,check-plugin,new-plugin}", required=True
    )
    run_command.add_parser(sub)
    plugins_command.add_parser(sub)
    cache = sub.add_parser("cache", help="the embedding cache of frozen towers: info | clear")
    cache.add_argument("action", choices=("info", "clear"))
    cache.add_argument(
        "--cache-dir", type=Path, default=folders.default_cache_dir(), help="default: $VLBENCH_CACHE or ~/.cache/vlbench"
    )
    cache.set_defaults(func=cmd_cache)
    pretrained.add_parser(sub)
    add_leaderboard_parser(sub)
    checkplugin.add_parser(sub)
    scaffold.add_parser(sub)
    _plain_descriptions(parser)
    return parser


def _plain_descriptions(parser: argparse.ArgumentParser) -> None:
    """Descriptions taken from docstrings lose their reStructuredText (``x``, :func:`x`) for --help."""
    if parser.description:
        parser.description = re.sub(r":\w+:`([^`]*)`|``([^`]*)``", lambda m: m.group(1) or m.group(2), parser.description)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _plain_descriptions(child)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return args.func(args, console)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
