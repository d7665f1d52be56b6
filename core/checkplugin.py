"""``vlbench check-plugin DISTRIBUTION``: the conformance contracts over one distribution.

Every component the installed distribution registers is checked twice: its contract
(:mod:`vlbench.testing.contracts`) and an end-to-end tiny run through the real engine with the
kit's mocks around it (:func:`vlbench.testing.tiny_suite.tiny_run`). A plugin of the distribution
that failed to load, and a name it shares with another plugin, are failures too.

Exit status: 0 every check passed or was skipped, 1 some check failed, 2 no installed
distribution of that name ships a vlbench plugin.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import re
import tempfile
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

if TYPE_CHECKING:
    from rich.console import Console

    from vlbench.manager import PluginHost
    from vlbench.types.specs import ComponentSpec, DatasetSpec, FusionSpec, TaskSpec, TextEncoderSpec, VisionEncoderSpec

Status = Literal["pass", "fail", "skip"]


@dataclass(frozen=True)
class CheckResult:
    kind: str  # a component kind, "plugin" or "hook"
    name: str
    check: str  # "contract", "end-to-end", "load", "unique name", ...
    status: Status
    reason: str = ""


class Skip(Exception):
    """A check that cannot apply to this component; the message says why."""


def normalize_distribution(name: str) -> str:
    """PEP 503 form, so "vlbench_Example.plugin" and "vlbench-example-plugin" compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-plugin",
        help="run the conformance contracts over every component of an installed distribution",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.add_argument("distribution", help="an installed distribution, e.g. vlbench-example-plugin")
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="input size of the vision encoders; default: each encoder's own",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="[NAME.]KEY=VALUE",
        help="an option for the components checked (VALUE in TOML, else a string), e.g. root=/data/RSTPReid "
        "for a loader; NAME. limits it to one component; repeatable",
    )
    parser.set_defaults(func=cmd_check_plugin)


def parse_options(pairs: Sequence[str]) -> dict[str | None, dict[str, Any]]:
    """``[NAME.]KEY=VALUE`` strings -> {NAME or None: {KEY: VALUE}}; VALUE read as TOML, else kept as text."""
    import tomllib

    from vlbench.errors import UserError

    parsed: dict[str | None, dict[str, Any]] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--option {pair!r}: expected KEY=VALUE or NAME.KEY=VALUE, e.g. --option root=/data/RSTPReid")
        name, _, key = key.strip().rpartition(".")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text
        parsed.setdefault(name or None, {})[key] = value
    return parsed


def cmd_check_plugin(args: argparse.Namespace, console: Console) -> int:
    from rich.table import Table

    from vlbench.manager import PluginHost
    from vlbench.testing import mocks

    host = PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks)])
    results = check_distribution(host, args.distribution, image_size=args.image_size, options=parse_options(args.option))
    table = Table(title=f"check-plugin {args.distribution}")
    for column in ("kind", "name", "check", "result"):
        table.add_column(column, no_wrap=True)
    table.add_column("reason", overflow="fold")
    colour = {"pass": "green", "fail": "red", "skip": "yellow"}
    for r in results:
        table.add_row(r.kind, r.name, r.check, f"[{colour[r.status]}]{r.status}[/]", r.reason)
    console.print(table)
    counts = {status: sum(r.status == status for r in results) for status in colour}
    console.print(f"{counts['pass']} passed, {counts['fail']} failed, {counts['skip']} skipped")
    return 1 if counts["fail"] else 0


def check_distribution(
    host: PluginHost,
    distribution: str,
    *,
    image_size: Sequence[int] | None = None,
    options: Mapping[str | None, Mapping[str, Any]] | None = None,
) -> list[CheckResult]:
    """Every check of every component ``distribution`` registers in ``host``, which must also
    hold the mocks (``PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks)])``).

    ``options``: {component name: {key: value}}, and under None options for every component
    that declares the key (what ``--option`` gives)."""
    options = options or {}
    from vlbench.errors import UserError
    from vlbench.registry import did_you_mean

    wanted = normalize_distribution(distribution)
    mine = lambda dist: normalize_distribution(dist) == wanted  # noqa: E731
    plugins = sorted(name for name, info in host.plugins.items() if mine(info.distribution))
    failures = [f for f in host.failures if mine(f.distribution)]
    if not plugins and not failures:
        shipping = sorted({p.distribution for p in host.plugins.values() if p.distribution != "(in-process)"})
        raise UserError(
            f"no installed distribution {distribution!r} ships a vlbench plugin.{did_you_mean(distribution, shipping)} "
            f"Distributions with vlbench plugins here: {', '.join(shipping)}. Install it (pip install -e PATH), check "
            f"its [project.entry-points.vlbench] table, and VLBENCH_LOAD_PLUGINS / VLBENCH_BLOCK_PLUGINS."
        )
    results = [CheckResult("plugin", f.plugin, "load", "fail", f"{f.stage}: {f.error}") for f in failures]
    results += _hook_name_checks(host, plugins)
    results += [
        CheckResult(c.kind, c.name, "unique name", "fail", c.describe())
        for c in host.conflicts()
        if any(mine(owner.distribution) for owner in c.owners)
    ]
    with tempfile.TemporaryDirectory(prefix="vlbench-check-") as tmp:
        workdir = Path(tmp)
        for kind in host.kinds:
            for name, spec in sorted(host.specs(kind).items()):
                if mine(spec.distribution):
                    given = {k: v for k, v in options.get(None, {}).items() if k in spec.options} | dict(options.get(name, {}))
                    results += _component_checks(host, spec, kind, workdir / kind / name, image_size, given)
    for hook in ("vlbench_resolve_vision_encoder", "vlbench_run_finished"):
        for plugin_name in host.implementers(hook):
            if plugin_name in plugins:
                results.append(CheckResult("hook", plugin_name, hook, "skip", _NO_CONTRACT[hook]))
    return results


def _hook_name_checks(host: PluginHost, plugins: list[str]) -> list[CheckResult]:
    """Hook functions pluggy accepts but vlbench never calls: a misspelt hook name, or a
    hook-named function without ``@hookimpl``. Both load silently and register nothing."""
    from vlbench.registry import did_you_mean

    known = host.hook_names()
    results = []
    for name in plugins:
        plugin = host.plugin_object(name)
        declared = host.implemented_hooks(name)
        if not any(declared.values()):
            results.append(
                CheckResult("plugin", name, "hooks", "fail", "implements no vlbench hook, so it adds nothing (see docs/hooks.md)")
            )
        implemented = set(declared)
        for attr in sorted(implemented - set(known)):
            results.append(
                CheckResult(
                    "hook", name, attr, "fail", f"no hook is named {attr!r}, so it is never called.{did_you_mean(attr, known)}"
                )
            )
        for attr in sorted((set(known) & set(dir(plugin))) - implemented):
            if callable(getattr(plugin, attr)):
                results.append(
                    CheckResult(
                        "hook",
                        name,
                        attr,
                        "fail",
                        "defined without @hookimpl (from vlbench import hookimpl), so it is never called",
                    )
                )
    return results


_NO_CONTRACT = {
    "vlbench_resolve_vision_encoder": "open names are resolved on demand: test one with VisionEncoderContract and "
    "spec_name set to such a name",
    "vlbench_run_finished": "observers have no contract: vlbench reports an observer that raises and goes on",
}


def _component_checks(
    host: PluginHost,
    spec: ComponentSpec,
    kind: str,
    workdir: Path,
    image_size: Sequence[int] | None,
    given: Mapping[str, Any] | None = None,
) -> list[CheckResult]:
    from vlbench.testing import contracts, tiny_suite

    given = dict(given or {})
    options = {**spec.options, **given}  # what a suite passes: the defaults and the --option values
    folders = (workdir / f"run{i}" for i in itertools.count())

    def run(**components: Any) -> None:
        record = tiny_suite.tiny_run(host, next(folders), options={kind: given}, **components)
        if record["status"] != "ok" and record["error"]["type"] == "UserError":
            raise Skip(f"needs configuration: {record['error']['message']} (pass it with --option KEY=VALUE)")
        if record["status"] != "ok":
            raise AssertionError(f"{record['error']['type']}: {record['error']['message']}")

    # The host's specs are typed ComponentSpec; each built-in kind registers its own subclass.
    checks: dict[str, Callable[[], None]]
    if kind == "vision":
        vision = cast("VisionEncoderSpec", spec)
        size = cast("tuple[int, int]", tuple(image_size)) if image_size else None  # (height, width), checked by the CLI
        checks = {
            "contract": lambda: contracts.check_vision_encoder(vision, image_size=size, **options),
            "end-to-end": lambda: run(vision=spec.name, image_size=image_size),
        }
    elif kind == "text":
        text_spec = cast("TextEncoderSpec", spec)
        checks = {
            "contract": lambda: contracts.check_text_encoder(text_spec, **options),
            "end-to-end": lambda: run(text=spec.name),
        }
    elif kind == "fusion":
        fusion_spec = cast("FusionSpec", spec)
        checks = {
            "contract": lambda: contracts.check_fusion(fusion_spec, objectives=host.objectives, kinds=host.kinds, **options)
        }
        text = "mock_text" if fusion_spec.uses_text else None
        for objective, task in tiny_suite.mock_tasks_for_fusion(fusion_spec, host.objectives).items():
            if task is None:
                reason = f"no mock task exercises {objective}{'' if fusion_spec.uses_text else ' without a text encoder'}"
                checks[f"end-to-end ({objective})"] = functools.partial(_skip, reason)
            else:
                checks[f"end-to-end ({objective})"] = functools.partial(run, fusion=spec.name, text=text, task=task)
    elif kind == "task":
        task_spec = cast("TaskSpec", spec)
        checks = {"contract": lambda: contracts.check_task(task_spec, **options)}
        if task_spec.objective is None:
            checks["end-to-end"] = lambda: run(task=spec.name, fusion=None, text=None)
        elif task_spec.objective in tiny_suite.MOCK_FUSION:
            fusion, text = tiny_suite.MOCK_FUSION[task_spec.objective]
            checks["end-to-end"] = lambda: run(task=spec.name, fusion=fusion, text=text)
        else:
            checks["end-to-end"] = lambda: _skip(f"no mock fusion serves the {task_spec.objective!r} objective")
    elif kind == "dataset":
        return _dataset_checks(cast("DatasetSpec", spec), workdir, run, options)
    else:  # a kind a plugin registered: its own contract check, when it has one
        check = host.kinds[kind].check
        checks = {
            "contract": (lambda: check(spec, workdir / "contract", **options))
            if check is not None
            else (lambda: _skip(f"the {kind} kind declares no contract check"))
        }
    return [_attempt(kind, spec.name, check, fn) for check, fn in checks.items()]


def _skip(reason: str) -> None:
    raise Skip(reason)


def _dataset_checks(spec: DatasetSpec, workdir: Path, run: Callable[..., None], options: Mapping[str, Any]) -> list[CheckResult]:
    from vlbench.testing import contracts, tiny_suite

    def contract() -> None:
        contracts.check_dataset(spec, workdir / "contract", **options)

    results = [_attempt("dataset", spec.name, "contract", contract)]
    task = tiny_suite.mock_task_for(spec)
    if task is not None:
        if results[0].status == "skip":
            results.append(CheckResult("dataset", spec.name, "end-to-end", "skip", results[0].reason))
        else:
            results.append(_attempt("dataset", spec.name, "end-to-end", lambda: run(task=task, dataset=spec.name)))
    return results


def _attempt(kind: str, name: str, check: str, fn: Callable[[], None]) -> CheckResult:
    from vlbench.errors import UserError

    try:
        fn()
    except Skip as exc:
        return CheckResult(kind, name, check, "skip", str(exc))
    except UserError as exc:
        # A component that refuses to build without a setting (a loader's root, a weights file)
        # is not broken: the check needs configuration, given with --option KEY=VALUE.
        return CheckResult(kind, name, check, "skip", f"needs configuration: {exc} (pass it with --option KEY=VALUE)")
    except AssertionError as exc:
        return CheckResult(kind, name, check, "fail", str(exc).strip() or f"assertion failed {_where(exc)}")
    except Exception as exc:  # any exception is this component's failure, reported, and the next check runs
        return CheckResult(kind, name, check, "fail", f"{type(exc).__name__}: {exc} {_where(exc)}")
    return CheckResult(kind, name, check, "pass")


def _where(exc: BaseException) -> str:
    """The innermost frame, where a plugin's bug usually is."""
    frames = traceback.extract_tb(exc.__traceback__)
    return f"(at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
