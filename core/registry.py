"""Name -> spec, per kind. A name claimed by two plugins belongs to neither."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass

from vlbench.errors import UserError
from vlbench.types.specs import ComponentSpec, Kind


@dataclass(frozen=True)
class Conflict:
    kind: Kind
    name: str
    owners: tuple[ComponentSpec, ...]  # every spec that claimed the name

    def describe(self) -> str:
        owners = " and ".join(f"plugin {s.plugin!r} ({s.distribution} {s.version})" for s in self.owners)
        blockable = ",".join(s.plugin for s in self.owners[1:])
        return (
            f"{self.kind} component {self.name!r} is registered by {owners}; vlbench never lets one "
            f"silently replace the other, so the name is unavailable. Uninstall one of them or block "
            f"it, e.g. VLBENCH_BLOCK_PLUGINS={blockable}."
        )


def did_you_mean(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    return f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


class Registry:
    def __init__(self, kinds: Sequence[Kind]) -> None:
        self._specs: dict[Kind, dict[str, ComponentSpec]] = {kind: {} for kind in kinds}
        self._conflicts: dict[tuple[Kind, str], Conflict] = {}

    def add(self, kind: Kind, spec: ComponentSpec) -> None:
        key = (kind, spec.name)
        if key in self._conflicts:
            old = self._conflicts[key]
            self._conflicts[key] = Conflict(kind, spec.name, (*old.owners, spec))
        elif spec.name in self._specs[kind]:
            first = self._specs[kind].pop(spec.name)
            self._conflicts[key] = Conflict(kind, spec.name, (first, spec))
        else:
            self._specs[kind][spec.name] = spec

    def specs(self, kind: Kind) -> dict[str, ComponentSpec]:
        return dict(self._specs[kind])

    def conflicts(self) -> list[Conflict]:
        return list(self._conflicts.values())

    def find(self, kind: Kind, name: str) -> ComponentSpec | None:
        return self._specs[kind].get(name)

    def get(self, kind: Kind, name: str, *, where: str = "") -> ComponentSpec:
        """The spec for ``name``, or a UserError that says why not and what is close."""
        spec = self._specs[kind].get(name)
        if spec is not None:
            return spec
        if (kind, name) in self._conflicts:
            raise UserError(f"{where}{self._conflicts[(kind, name)].describe()}")
        raise UserError(
            f"{where}unknown {kind} component {name!r}.{did_you_mean(name, list(self._specs[kind]))} "
            f"`vlbench plugins` lists every registered component."
        )
