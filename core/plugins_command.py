"""`vlbench plugins`: every registered component, with the plugin and distribution that ship it,
and the problems (failed imports, name conflicts) of loading them."""

from __future__ import annotations

import argparse
import textwrap
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from vlbench.manager import PluginHost


def plugin_host() -> PluginHost:
    """Every installed plugin loaded (imports torch: call it from a command, never at import)."""
    from vlbench.manager import PluginHost

    return PluginHost()


def warn_plugin_problems(host: PluginHost, console: Console) -> None:
    for failure in host.failures:
        console.print(f"[yellow]warning:[/yellow] {escape(failure.describe())}")
    for conflict in host.conflicts():
        console.print(f"[yellow]warning:[/yellow] {escape(conflict.describe())}")


def cmd_plugins(args: argparse.Namespace, console: Console) -> int:
    """One line per component (name, plugin, distribution version), its description indented
    below: readable at 80 columns and greppable when piped."""
    host = plugin_host()
    for kind in host.kinds:
        specs = sorted(host.specs(kind).items())
        console.print(f"[bold]{kind}[/bold] ({len(specs)})")
        if not specs:
            continue
        name_width = max(len(name) for name, _ in specs)
        plugin_width = max(len(spec.plugin) for _, spec in specs)
        for name, spec in specs:
            console.print(
                f"  {name:<{name_width}}  {spec.plugin:<{plugin_width}}  {spec.distribution} {spec.version}",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            if spec.description:
                console.print(
                    textwrap.indent(textwrap.fill(spec.description, width=max(console.width - 6, 40)), "      "),
                    markup=False,
                    highlight=False,
                    style="dim",
                )
    objectives = ", ".join(f"{name} ({spec.plugin})" for name, spec in host.objectives.items())
    console.print(f"Objectives (what fusions serve and tasks need): {objectives}", markup=False, highlight=False, soft_wrap=True)
    console.print("Open names: vision encoders as timm:<any timm model>, when the timm_any plugin is loaded.")
    if host.failures or host.conflicts():
        warn_plugin_problems(host, console)
        return 1
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    plugins = subparsers.add_parser("plugins", help="list every component with its kind, plugin, distribution and version")
    plugins.set_defaults(func=cmd_plugins)
