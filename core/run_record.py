"""A run's result record assembled from what the run produced (or the error that stopped it):
identity, components with their provenance, configuration, environment and times."""

from __future__ import annotations

import contextlib
import subprocess
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import vlbench
from vlbench import pretrained
from vlbench.fingerprint import code_fingerprint
from vlbench.manager import PluginHost
from vlbench.results import SCHEMA_VERSION
from vlbench.suite.runs import run_config
from vlbench.types.runs import ResultRecord, RunSpec
from vlbench.types.specs import ComponentSpec


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(vlbench.__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def components_block(
    run: RunSpec, specs: dict[str, ComponentSpec], weights: dict[str, str], provenance: dict[str, Any] | None = None
) -> dict[str, Any]:
    provenance = provenance or {}
    block = {}
    for kind, choice in run.components.items():
        if choice is None:
            continue
        spec = specs.get(kind)
        block[kind] = {
            "name": choice.name,
            "plugin": spec.plugin if spec else None,
            "distribution": spec.distribution if spec else None,
            "version": spec.version if spec else None,
            "options": dict(choice.options),
        }
        if kind in weights:
            block[kind]["weights"] = weights[kind]
            source = pretrained.provenance(kind, spec, choice) if spec else None
            if source is not None:  # where the pretrained file came from, its revision and sha256
                block[kind]["weights_source"] = source
        if kind in provenance:
            block[kind]["weights_provenance"] = dict(provenance[kind])
    return block


def assemble_record(
    run: RunSpec,
    started: str,
    content: dict[str, Any] | None,
    error: BaseException | None,
    host: PluginHost,
    fingerprint: dict[str, Any],
    extra_environment: Mapping[str, Any] | None = None,
) -> ResultRecord:
    """``extra_environment``: what an executor adds (the device a worker ran on)."""
    empty: dict[str, Any] = {}
    content = content or {}
    environment = content.get("environment", {"vlbench": vlbench.__version__, "git_commit": git_commit()})
    return ResultRecord(
        schema_version=SCHEMA_VERSION,
        run_id=run.run_id,
        suite=run.suite,
        label=run.label,
        status="ok" if error is None else "error",
        error=None
        if error is None
        else {
            "type": type(error).__name__,
            "message": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        },
        components=content.get("components") or components_block(run, _known_specs(run, host), {}),
        config=run_config(run, host.kinds),
        metrics=content.get("metrics", empty),
        selection=content.get("selection", empty),
        cost=content.get("cost", empty),
        training=content.get("training", empty),
        dataset=content.get("dataset", {"name": dataset.name if (dataset := run.choice("dataset")) else None}),
        environment={**environment, **(extra_environment or {}), "fingerprint": fingerprint},
        seed=run.seed,
        started_at=started,
        finished_at=now(),
    )


def error_record(
    run: RunSpec, started: str, error: BaseException, host: PluginHost, environment: Mapping[str, Any] | None = None
) -> ResultRecord:
    """The record of a run that failed outside :func:`run_suite` (e.g. its worker process died)."""
    return assemble_record(run, started, None, error, host, code_fingerprint(run, host), environment)


def _known_specs(run: RunSpec, host: PluginHost) -> dict[str, ComponentSpec]:
    """Specs of the run's components that the host knows: an error record names their plugin,
    distribution and version too (an unknown one stays unnamed; its error says why)."""
    specs = {}
    for kind, choice in run.components.items():
        if choice is None:
            continue
        with contextlib.suppress(Exception):
            specs[kind] = host.get(kind, choice.name)
    return specs
