"""Runs: build -> train on train -> select on val -> evaluate on test -> cost -> one record.

:func:`execute` runs one RunSpec and raises on failure; :func:`run_suite` runs many, turns
every failure into an error record and goes on. The steps live apart: :mod:`vlbench.build`
(components, precision, batchers), :mod:`vlbench.pipeline` (training, evaluation, cost,
profiling) and :mod:`vlbench.run_record` (the record).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

import vlbench
from vlbench import cost, embedding_cache
from vlbench.build import prepare, resolve_device
from vlbench.claims import ClaimBoard
from vlbench.errors import StorageError
from vlbench.fingerprint import resume_plan, set_aside, stale_reason
from vlbench.manager import PluginHost
from vlbench.pipeline import Reporter, SilentReporter, measure_cost, no_quality, profile, train_and_evaluate
from vlbench.results import RecordError, read_record, record_path, to_dict, write_record
from vlbench.resume import clean_leftovers, mark_observed, replay_unobserved
from vlbench.run_record import assemble_record, components_block, git_commit, now
from vlbench.types.runs import ResultRecord, RunContext, RunSpec

__all__ = ["Reporter", "SilentReporter", "SuiteOutcome", "execute", "resolve_device", "run_suite"]


def execute(
    run: RunSpec, host: PluginHost, cache_dir: Path, device: torch.device, reporter: Reporter, profile_dir: Path | None = None
) -> dict[str, Any]:
    """One run: build, train (if the task trains), evaluate (if it measures quality), cost, profile.

    Returns the record's content (everything but identity/status/times); raises on failure.
    ``profile_dir``: write torch.profiler traces of a few training and inference steps there.
    """
    reporter.stage("building")
    built, precision, train_loader, eval_loader = prepare(run, host, cache_dir, device)
    # Frozen towers read what they computed before (this suite or another) from the embedding cache.
    cached = embedding_cache.attach(
        built.model, built.frozen, built.specs, {k: c for k, c in run.components.items() if c}, cache_dir
    )
    try:
        if built.task_spec.measures_quality:
            content = train_and_evaluate(run, built, precision, train_loader, eval_loader, reporter)
        else:
            content = no_quality(run, built, reporter)
    finally:
        embedding_cache.detach(built.model, cached)  # cost is measured on the real towers
    if cached:
        content["training"] = {**content["training"], "embedding_cache": embedding_cache.report(cached)}
    reporter.stage("measuring cost")
    cost_block, train_batch = measure_cost(run, built, precision, train_loader, eval_loader)
    if profile_dir is not None:
        reporter.stage("profiling")
        profile(built, precision, train_batch, profile_dir, infer_batch=max(run.train["cost_batch_sizes"]))
    return {
        **content,
        "components": components_block(run, built.specs, built.weights, built.provenance),
        "cost": cost_block,
        "environment": {**cost.fingerprint(precision), "vlbench": vlbench.__version__, "git_commit": git_commit()},
    }


@dataclass
class SuiteOutcome:
    ok: list[str] = field(default_factory=list)  # run ids
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # finished before: resumed past
    stale: list[str] = field(default_factory=list)  # finished before with another fingerprint: set aside, re-run
    elsewhere: list[str] = field(default_factory=list)  # claimed by another live process sharing the results folder
    records: list[Path] = field(default_factory=list)


def run_suite(
    runs: Sequence[RunSpec],
    host: PluginHost,
    results_dir: Path,
    cache_dir: Path,
    device: torch.device,
    reporter: Reporter | None = None,
    warn: Callable[[str], Any] = print,
    profile_dir: Path | None = None,
    claims: ClaimBoard | None = None,
    environment: Mapping[str, Any] | None = None,
    runs_dir: Path | None = None,
) -> SuiteOutcome:
    """Every run not finished before and not claimed by another live process; a failing run
    becomes an error record and the suite goes on. Each run is claimed (:mod:`vlbench.claims`)
    before it starts, so processes sharing the results folder train each run once. A record
    whose fingerprint (code versions, data content: core/fingerprint.py) differs from the
    run's is stale: it is moved to ``<suite>/stale/`` and the run goes again.

    ``profile_dir`` (``vlbench run --profile``): the runs folder; each run writes torch.profiler
    traces to ``<profile_dir>/<suite>/<run_id>/profile/``. ``runs_dir`` (``vlbench run --runs-dir``)
    goes to the observers (the TensorBoard one writes there); None: no runs folder.
    """
    reporter = reporter or SilentReporter()
    outcome = SuiteOutcome()
    if not runs:
        return outcome
    suite = runs[0].suite
    board = claims or ClaimBoard(results_dir, suite)

    def notify(data: dict[str, Any], replayed: bool = False) -> None:
        run_dir = None if runs_dir is None else Path(runs_dir) / suite / data["run_id"]
        context = RunContext(suite, data["run_id"], record_path(results_dir, suite, data["run_id"]), run_dir, replayed)
        host.run_finished(data, context, runs_dir=None if runs_dir is None else Path(runs_dir), report=warn)

    clean_leftovers(results_dir, suite, board, cache_dir, warn)
    replay_unobserved(results_dir, suite, {run.run_id for run in runs}, board, lambda data: notify(data, replayed=True))
    plan = resume_plan(runs, host, results_dir, cache_dir)
    for run in runs:
        fingerprint = plan[run.run_id]["fingerprint"]
        if plan[run.run_id]["status"] == "done":
            outcome.skipped.append(run.run_id)
            continue
        claim = board.try_claim(run.run_id)
        if claim is None:
            outcome.elsewhere.append(run.run_id)
            continue
        with claim:
            stale = _stale_or_finished(results_dir, run, fingerprint)
            if stale is False:  # another process finished it since we looked
                outcome.skipped.append(run.run_id)
                continue
            if not claim.still_held():
                outcome.elsewhere.append(run.run_id)
                continue
            if stale is not None:
                path, record, reason = stale
                set_aside(path, record)
                outcome.stale.append(run.run_id)
                warn(f"{run.label} [{run.run_id}]: stale record moved to stale/, running again ({reason})")
            data = _run_one(run, host, results_dir, cache_dir, device, reporter, profile_dir, outcome, fingerprint, environment)
            reporter.run_finished(data)
            notify(data)
            mark_observed(results_dir, suite, run.run_id)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return outcome


def _stale_or_finished(
    results_dir: Path, run: RunSpec, fingerprint: dict[str, Any]
) -> tuple[Path, dict[str, Any], str] | Literal[False] | None:
    """False: finished with this fingerprint; (path, record, reason): finished but stale; None: to run."""
    path = record_path(results_dir, run.suite, run.run_id)
    try:
        record = read_record(path)
    except RecordError:
        return None
    if record["status"] != "ok":
        return None
    reason = stale_reason(record, fingerprint)
    return False if reason is None else (path, record, reason)


def _run_one(
    run: RunSpec,
    host: PluginHost,
    results_dir: Path,
    cache_dir: Path,
    device: torch.device,
    reporter: Reporter,
    profile_dir: Path | None,
    outcome: SuiteOutcome,
    fingerprint: dict[str, Any],
    environment: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Execute and save one run; a failure inside it becomes its error record, a failure to
    save stops the suite (StorageError)."""
    started, content, error = now(), None, None
    try:
        traces = None if profile_dir is None else Path(profile_dir) / run.suite / run.run_id / "profile"
        content = execute(run, host, cache_dir, device, reporter, traces)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # any failure inside a run becomes its record
        error = exc
    record = assemble_record(run, started, content, error, host, fingerprint, environment)
    try:
        path = _save(record, results_dir, run)
    except (RecordError, TypeError) as exc:  # what the run produced breaks the schema: that is its failure
        error = exc
        record = assemble_record(run, started, None, exc, host, fingerprint, environment)
        path = _save(record, results_dir, run)
    outcome.records.append(path)
    (outcome.ok if error is None else outcome.failed).append(run.run_id)
    return to_dict(record)


def _save(record: ResultRecord, results_dir: Path, run: RunSpec) -> Path:
    try:
        return write_record(record, results_dir)
    except OSError as exc:
        raise StorageError(
            f"the result of run {run.run_id} ({run.label}) could not be saved to {record_path(results_dir, run.suite, run.run_id)}: "
            f"{exc.strerror or exc}. The suite stopped; records written before are intact. Free space (or fix the folder) "
            "and run the same command again: finished runs are skipped."
        ) from None
