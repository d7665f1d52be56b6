"""PluginHost: loads the ``vlbench`` entry-point group and is the core's only door to hooks.

Built-in plugins are declared in the same group third-party distributions use, so every run
exercises the third-party path and any plugin can be blocked by name. Environment:

- ``VLBENCH_LOAD_PLUGINS``: comma-separated plugin (entry-point) or distribution names;
  when set, only these load.
- ``VLBENCH_BLOCK_PLUGINS``: comma-separated plugin or distribution names that never load.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata as md
import os
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pluggy

from vlbench import hookspecs, kinds, objectives
from vlbench.errors import UserError
from vlbench.objectives import ObjectiveSpec
from vlbench.registry import Conflict, Registry
from vlbench.types.runs import ResultRecordDict, RunContext
from vlbench.types.specs import ComponentKind, ComponentSpec, Kind

ENTRY_POINT_GROUP = "vlbench"


@dataclass(frozen=True)
class PluginInfo:
    name: str  # entry-point name
    distribution: str
    version: str
    module: str


@dataclass(frozen=True)
class PluginFailure:
    plugin: str  # entry-point name
    distribution: str
    version: str
    stage: str  # "import", "vision registration", ...
    error: str  # one line
    traceback: str

    def describe(self) -> str:
        return (
            f"plugin {self.plugin!r} from {self.distribution} {self.version} failed during "
            f"{self.stage}: {self.error} (the other plugins still load; block it with "
            f"VLBENCH_BLOCK_PLUGINS={self.plugin})"
        )


def _env_names(var: str) -> set[str] | None:
    raw = os.environ.get(var, "").strip()
    return {part.strip() for part in raw.split(",") if part.strip()} if raw else None


class PluginHost:
    """Loads plugins once and answers the core's questions about them."""

    def __init__(self, extra_plugins: Iterable[tuple[str, object]] = (), *, load_entry_points: bool = True):
        self.pm = pluggy.PluginManager("vlbench")
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self.kinds: dict[Kind, ComponentKind] = {kind.name: kind for kind in kinds.BUILTIN}
        self.objectives: dict[str, ObjectiveSpec] = dict(objectives.BUILTIN)
        if load_entry_points:
            self._load_entry_points()
        for name, plugin in extra_plugins:
            self._register_plugin(name, plugin, PluginInfo(name, "(in-process)", "", getattr(plugin, "__name__", "")))
        self._collect_named("vlbench_register_component_kinds", ComponentKind, self.kinds, "component kind")
        self._collect_named("vlbench_register_objectives", ObjectiveSpec, self.objectives, "objective")
        self.kinds = dict(sorted(self.kinds.items(), key=lambda item: item[1].order))
        self.registry = Registry(list(self.kinds))
        self._collect_specs()

    # ------------------------------------------------------------------ loading

    def _load_entry_points(self) -> None:
        only = _env_names("VLBENCH_LOAD_PLUGINS")
        blocked = _env_names("VLBENCH_BLOCK_PLUGINS") or set()
        seen: dict[str, str] = {}  # entry-point name -> distribution
        for ep in sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist else "(unknown)"
            version = ep.dist.version if ep.dist else ""
            names = {ep.name, dist}
            if names & blocked or (only is not None and not names & only):
                continue
            info = PluginInfo(ep.name, dist, version, ep.value)
            if ep.name in seen:
                if seen[ep.name] != dist:  # else the same distribution is visible twice on sys.path
                    self.failures.append(
                        self._failure(
                            info,
                            "import",
                            NameError(
                                f"entry-point name {ep.name!r} is already used by {seen[ep.name]}; name entry points after the import package"
                            ),
                        )
                    )
                continue
            seen[ep.name] = dist
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the others down
                self.failures.append(self._failure(info, "import", exc))
                continue
            self._register_plugin(ep.name, plugin, info)

    def _register_plugin(self, name: str, plugin: object, info: PluginInfo) -> None:
        try:
            self.pm.register(plugin, name=name)
            self.pm.check_pending()  # a misspelt hook name would otherwise register nothing, silently
        except Exception as exc:
            if self.pm.is_registered(plugin):
                self.pm.unregister(plugin)
            self.failures.append(self._failure(info, "hook validation", exc))
            return
        self.plugins[name] = info

    @staticmethod
    def _failure(info: PluginInfo, stage: str, exc: BaseException) -> PluginFailure:
        return PluginFailure(
            info.name,
            info.distribution,
            info.version,
            stage,
            f"{type(exc).__name__}: {exc}",
            "".join(traceback.format_exception(exc)),
        )

    def _collect_named(self, hook_name: str, spec_type: type, into: dict[str, Any], what: str) -> None:
        """Kinds and objectives: a name already taken (a built-in or an earlier plugin) is refused."""
        for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
            info = self.plugins[impl.plugin_name]
            pending: list[Any] = []

            def register(spec: Any, _pending=pending) -> None:
                if not isinstance(spec, spec_type):
                    raise TypeError(f"expected a {spec_type.__name__}, got {type(spec).__name__}")
                _pending.append(spec)

            try:
                impl.function(register=register)
                for spec in pending:
                    if spec.name in into:
                        raise UserError(f"{what} {spec.name!r} is already registered")
            except Exception as exc:
                self.failures.append(self._failure(info, f"{what} registration", exc))
                continue
            for spec in pending:
                into[spec.name] = dataclasses.replace(spec, plugin=info.name) if spec_type is ObjectiveSpec else spec

    def _collect_specs(self) -> None:
        # Each plugin's registration hook is called with its own `register`, so every spec
        # carries the plugin that registered it and a failing plugin is isolated.
        by_type = {kind.spec_type: name for name, kind in self.kinds.items()}
        hooks = dict.fromkeys([*(kind.register_hook for kind in self.kinds.values()), "vlbench_register_components"])
        for hook_name in hooks:
            own = {name for name, kind in self.kinds.items() if kind.register_hook == hook_name}
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                info = self.plugins[impl.plugin_name]
                pending: list[tuple[Kind, ComponentSpec]] = []

                def register(spec: ComponentSpec, _own=own, _pending=pending) -> None:
                    kind = by_type.get(type(spec))
                    if kind not in _own:
                        wanted = " or ".join(self.kinds[k].spec_type.__name__ for k in sorted(_own))
                        wanted = wanted or "spec of a kind a plugin registered (vlbench_register_component_kinds)"
                        raise TypeError(f"expected a {wanted}, got {type(spec).__name__}")
                    _pending.append((kind, spec))

                try:
                    impl.function(register=register)
                except Exception as exc:
                    stage = next(iter(own)) if len(own) == 1 else "component"
                    self.failures.append(self._failure(info, f"{stage} registration", exc))
                    continue
                for kind, spec in pending:
                    self.registry.add(kind, self._stamp(spec, info))

    @staticmethod
    def _stamp(spec: ComponentSpec, info: PluginInfo) -> ComponentSpec:
        return dataclasses.replace(spec, plugin=info.name, distribution=info.distribution, version=info.version)

    # ------------------------------------------------------------------ the facade

    def specs(self, kind: Kind) -> dict[str, ComponentSpec]:
        return self.registry.specs(kind)

    def objective(self, name: str, *, where: str = "") -> ObjectiveSpec:
        """A registered objective (built-in or a plugin's)."""
        if name not in self.objectives:
            raise UserError(f"{where}unknown objective {name!r}; registered: {', '.join(sorted(self.objectives))}.")
        return self.objectives[name]

    def model_kinds(self) -> list[ComponentKind]:
        """The kinds a run builds into its VLModel, in build order."""
        return [kind for kind in self.kinds.values() if kind.build is not None]

    def conflicts(self) -> list[Conflict]:
        return self.registry.conflicts()

    def get(self, kind: Kind, name: str, *, where: str = "") -> ComponentSpec:
        """A registered spec; vision names nobody registered go to the resolve hook."""
        if kind == "vision" and self.registry.find("vision", name) is None:
            # firstresult semantics, walked by hand so the answer carries its plugin
            for impl in reversed(self.pm.hook.vlbench_resolve_vision_encoder.get_hookimpls()):
                resolved = impl.function(name=name)
                if resolved is not None:
                    # the hookspec's return type: pluggy types a hook implementation as returning object
                    return self._stamp(cast(ComponentSpec, resolved), self.plugins[impl.plugin_name])
        return self.registry.get(kind, name, where=where)

    def run_finished(
        self, record: ResultRecordDict, context: RunContext, runs_dir: Path | None = None, report: Callable[[str], Any] = print
    ) -> None:
        """Notify observers; an observer that raises is reported, never fatal."""
        arguments = {"record": record, "runs_dir": runs_dir, "context": context}
        for impl in self.pm.hook.vlbench_run_finished.get_hookimpls():
            try:  # each implementation takes the subset of the hook's arguments it names
                impl.function(**{name: arguments[name] for name in impl.argnames})
            except Exception as exc:
                report(f"observer plugin {impl.plugin_name!r} failed on run {record.get('run_id')}: {type(exc).__name__}: {exc}")

    def implementers(self, hook_name: str) -> list[str]:
        """Names of the loaded plugins that implement ``hook_name``."""
        return [impl.plugin_name for impl in getattr(self.pm.hook, hook_name).get_hookimpls()]

    def plugin_object(self, name: str) -> object:
        """The module (or object) registered as plugin ``name``."""
        return self.pm.get_plugin(name)

    def implemented_hooks(self, name: str) -> dict[str, bool]:
        """Hook name -> whether vlbench declares it, for every hook plugin ``name`` implements."""
        return {caller.name: caller.spec is not None for caller in self.pm.get_hookcallers(self.pm.get_plugin(name)) or []}

    def hook_names(self) -> list[str]:
        return sorted(name for name in dir(hookspecs) if name.startswith("vlbench_"))
