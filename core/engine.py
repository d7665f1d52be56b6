"""Runs: build -> train on train -> select on val -> evaluate on test -> cost -> one record.

:func:`execute` runs one RunSpec and raises on failure; :func:`run_suite` runs many, turns
every failure into an error record and goes on.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import subprocess
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

import vlbench
from vlbench import bootstrap, efficiency, embedding_cache, pretrained
from vlbench.claims import ClaimBoard
from vlbench.data import SplitLoader, resolve_precision
from vlbench.errors import PluginError, StorageError, UserError
from vlbench.fingerprint import code_fingerprint, resume_plan, set_aside, stale_reason
from vlbench.manager import PluginHost
from vlbench.objectives import ObjectiveSpec, VLModel
from vlbench.preflight import captions_at_limit, dataset_for
from vlbench.results import SCHEMA_VERSION, RecordError, read_record, record_path, to_dict, write_record
from vlbench.resume import clean_leftovers, mark_observed, replay_unobserved
from vlbench.suite import run_config
from vlbench.training import TrainResult, fit
from vlbench.types import (
    ComponentChoice,
    ComponentSpec,
    Dataset,
    EncoderOutput,
    Metrics,
    ResultRecord,
    RunSpec,
    TaskSpec,
)


class Reporter(Protocol):
    """What the engine tells a progress display. Every method may be a no-op."""

    def run_started(self, run: RunSpec, total_steps: int) -> None: ...
    def step(self, epoch: int, step: int, loss: float) -> None: ...
    def epoch(self, row: dict[str, float]) -> None: ...
    def stage(self, text: str) -> None: ...
    def run_finished(self, record: dict[str, Any]) -> None: ...


class SilentReporter:
    def run_started(self, run: RunSpec, total_steps: int) -> None: ...
    def step(self, epoch: int, step: int, loss: float) -> None: ...
    def epoch(self, row: dict[str, float]) -> None: ...
    def stage(self, text: str) -> None: ...
    def run_finished(self, record: dict[str, Any]) -> None: ...


@dataclass
class Built:
    """A run's components, built and ready."""

    specs: dict[str, ComponentSpec]
    dataset: Dataset | None  # None for a cost-only task that needs no data
    task: Any
    objective: ObjectiveSpec | None  # None: a cost-only task (no fusion)
    model: VLModel
    frozen: set[str]
    weights: dict[str, str] = field(default_factory=dict)  # component -> provenance of its weights
    provenance: dict[str, Any] = field(default_factory=dict)  # component -> where packaged weights came from


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError('device "cuda" was asked for (suite.device or --device) but torch sees no CUDA device: use "auto" or "cpu".')
    return torch.device(requested)


def _weights_label(choice: ComponentChoice, pretrained: bool) -> str:
    if choice.options.get("weights"):
        digest = hashlib.sha256(Path(choice.options["weights"]).expanduser().read_bytes()).hexdigest()
        return f"file:{choice.options['weights']} sha256:{digest[:16]}"
    return "pretrained" if pretrained else "random-init"


def check_encoder_output(spec: ComponentSpec, out: Any, batch: int, token_dim: int, pooled_dim: int) -> None:
    """Catch a plugin that breaks the EncoderOutput contract on its first batch."""
    who = f"{spec.name!r} (plugin {spec.plugin!r}, {spec.distribution} {spec.version})"
    if not isinstance(out, EncoderOutput):
        raise PluginError(f"encoder {who} returned {type(out).__name__}, not an EncoderOutput")
    tokens, pooled = out.tokens, out.pooled
    if tokens.ndim != 3 or tokens.shape[0] != batch or tokens.shape[2] != token_dim:
        raise PluginError(f"encoder {who} returned tokens of shape {tuple(tokens.shape)}; expected [{batch}, N, {token_dim}]")
    if tuple(pooled.shape) != (batch, pooled_dim):
        raise PluginError(f"encoder {who} returned pooled of shape {tuple(pooled.shape)}; expected [{batch}, {pooled_dim}]")
    if out.mask is not None and tuple(out.mask.shape) != tuple(tokens.shape[:2]):
        raise PluginError(f"encoder {who} returned a mask of shape {tuple(out.mask.shape)} for tokens {tuple(tokens.shape)}")
    if not (torch.isfinite(tokens).all() and torch.isfinite(pooled).all()):
        raise PluginError(f"encoder {who} returned NaN or infinite values on its first batch")


def build(run: RunSpec, host: PluginHost, cache_dir: Path, device: torch.device) -> Built:
    """Dataset, task and every model kind of the run, in build order; frozen parts set."""
    specs = {kind: host.get(kind, choice.name) for kind, choice in run.components.items() if choice is not None}
    dataset = None
    if run.choice("dataset") is not None:
        dataset = dataset_for(run, specs["dataset"].factory, cache_dir)
    seed_everything(run.seed)
    task_spec: TaskSpec = specs["task"]
    task = task_spec.factory(**run.choice("task").options)
    objective = host.objective(task_spec.objective) if task_spec.objective is not None else None
    # What the fusion factory takes from the task: num_classes (classification) and the task's own
    # inputs (generation: the TRAIN captions to fit the decoder's vocabulary).
    inputs = {"num_classes": task.num_classes(dataset)}
    fusion_inputs = getattr(task, "fusion_inputs", None)
    if fusion_inputs is not None and dataset is not None:
        inputs |= fusion_inputs(dataset)
    parts: dict[str, Any] = {}
    frozen: set[str] = set()
    weights: dict[str, str] = {}
    for kind in host.model_kinds():
        if kind.name not in run.components:
            continue
        choice = run.choice(kind.name)
        if choice is None:
            parts[kind.name] = None
            continue
        parts[kind.name] = kind.build(specs[kind.name], choice, parts, inputs, cache_dir)
        if "pretrained" in choice.options:
            weights[kind.name] = _weights_label(choice, choice.options["pretrained"])
        if choice.options.get("freeze"):
            frozen.add(kind.name)
    # A part whose weights another part fixed (a fusion that keeps its language model frozen) is
    # frozen too: eval mode while training, no optimizer group, listed in the record.
    frozen |= {name for name, part in parts.items() if part is not None and any(True for _ in part.parameters())
               and not any(p.requires_grad for p in part.parameters())}
    model = VLModel(parts)
    for part in frozen:
        model.components()[part].requires_grad_(False)
    model.to(device)
    # Weights served from a package (e.g. EfficientNet-Lite0) say where they came from; third-party
    # components may predate the attribute.
    provenance = {name: dict(part.weights_provenance) for name, part in parts.items()
                  if getattr(part, "weights_provenance", None)}
    return Built(specs, dataset, task, objective, model, frozen, weights, provenance)


def _first_batch_check(built: Built, loader: SplitLoader, split_name: str = "train") -> None:
    split = built.dataset.splits[split_name]
    model = built.model
    _, images = next(loader.images(split, batch_size=2))
    with torch.inference_mode():
        check_encoder_output(built.specs["vision"], model.vision(images), len(images), model.vision.info.token_dim, model.vision.info.pooled_dim)
        if model.text is not None and split.captions is not None:
            _, text = next(loader.texts([caps[0] for caps in split.captions[:2]]))
            check_encoder_output(built.specs["text"], model.text(text), len(text), model.text.info.token_dim, model.text.info.pooled_dim)


def _metrics_dict(metrics: Metrics, interval_seed: int | None = None) -> dict[str, Any]:
    """A split's metrics as stored; with ``interval_seed``, the engine's bootstrap intervals
    and the ``ci`` block saying how they were drawn (or why there are none)."""
    block = {
        "values": dict(metrics.values), "main": metrics.main, "chance": dict(metrics.chance),
        "baselines": {name: dict(values) for name, values in metrics.baselines.items()},
        "ci95": {k: list(v) for k, v in metrics.ci95.items()}, "units": dict(metrics.units), "details": dict(metrics.details),
    }
    if interval_seed is not None:
        block["ci95"], block["ci"] = bootstrap.intervals(metrics, seed=interval_seed)
    return block


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(vlbench.__file__).parent, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _components_block(
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


def execute(
    run: RunSpec, host: PluginHost, cache_dir: Path, device: torch.device, reporter: Reporter, profile_dir: Path | None = None
) -> dict[str, Any]:
    """One run: build, train (if the task trains), evaluate (if it measures quality), cost, profile.

    Returns the record's content (everything but identity/status/times); raises on failure.
    ``profile_dir``: write torch.profiler traces of a few training and inference steps there.
    """
    reporter.stage("building")
    built, precision, train_loader, eval_loader = _prepare(run, host, cache_dir, device)
    # Frozen towers read what they computed before (this suite or another) from the embedding cache.
    cached = embedding_cache.attach(built.model, built.frozen, built.specs, {k: c for k, c in run.components.items() if c}, cache_dir)
    try:
        if built.specs["task"].measures_quality:
            content = _train_and_evaluate(run, built, precision, train_loader, eval_loader, reporter)
        else:
            content = _no_quality(run, built, reporter)
    finally:
        embedding_cache.detach(built.model, cached)  # cost is measured on the real towers
    if cached:
        content["training"] = {**content["training"], "embedding_cache": embedding_cache.report(cached)}
    reporter.stage("measuring cost")
    cost, train_batch = measure_cost(run, built, precision, train_loader, eval_loader)
    if profile_dir is not None:
        reporter.stage("profiling")
        _profile(built, precision, built.task, train_batch, profile_dir, infer_batch=max(run.train["cost_batch_sizes"]))
    return {
        **content,
        "components": _components_block(run, built.specs, built.weights, built.provenance),
        "cost": cost,
        "environment": {**efficiency.fingerprint(precision), "vlbench": vlbench.__version__, "git_commit": _git_commit()},
    }


def _no_quality(run: RunSpec, built: Built, reporter: Reporter) -> dict[str, Any]:
    """A cost-only task: nothing to train or score; the cost protocol's synthetic inputs."""
    reporter.run_started(run, 0)
    dataset = built.dataset
    return {
        "metrics": {"quality": False, "main": None, "higher_is_better": None, "splits": {}},
        "selection": {},
        "training": {},
        "dataset": {"name": None, "synthetic": True, "note": "no dataset: synthetic inputs of the cost protocol"}
        if dataset is None else {"name": dataset.name, "split_sizes": {n: len(s) for n, s in dataset.splits.items()}},
    }


def _train_and_evaluate(run: RunSpec, built: Built, precision: Any, train_loader: SplitLoader, eval_loader: SplitLoader,
                        reporter: Reporter) -> dict[str, Any]:
    """Train on train, select on val, score the selected checkpoint on val and test."""
    train = run.train
    model, task, dataset = built.model, built.task, built.dataset
    _first_batch_check(built, eval_loader)

    train_split, val_split, test_split = (dataset.splits[name] for name in ("train", "val", "test"))
    samples = sum(len(c) for c in train_split.captions) if train_split.captions is not None else len(train_split)
    steps_per_epoch = max(1, samples // train["batch_size"])
    if train["max_steps_per_epoch"]:
        steps_per_epoch = min(steps_per_epoch, train["max_steps_per_epoch"])
    reporter.run_started(run, steps_per_epoch * train["epochs"])

    def validate() -> Metrics:
        reporter.stage("validating")
        return task.evaluate(model, val_split, eval_loader)

    # A dataset whose captions name sides never sees a flipped image, whatever the RunSpec says.
    hflip = bool(train["hflip"]) and getattr(built.specs["dataset"], "hflip_safe", True)
    result: TrainResult = fit(
        model, task.loss,
        lambda epoch: train_loader.train_batches(
            train_split, epoch=epoch, seed=run.seed, hflip=hflip, max_steps=train["max_steps_per_epoch"]
        ),
        steps_per_epoch, validate, train, precision, built.frozen,
        on_step=reporter.step, on_epoch=reporter.epoch, higher_is_better=built.specs["task"].higher_is_better,
    )
    reporter.stage("testing")
    val_metrics = validate()  # of the selected checkpoint, stored in full
    test_metrics = task.evaluate(model, test_split, eval_loader)
    splits = {"val": _metrics_dict(val_metrics), "test": _metrics_dict(test_metrics, interval_seed=run.seed)}
    if train["eval_train_split"]:
        splits["train"] = _metrics_dict(task.evaluate(model, train_split, eval_loader))
    return {
        "metrics": {
            "main": test_metrics.main,
            "higher_is_better": built.specs["task"].higher_is_better,
            "splits": splits,
        },
        "selection": {"split": "val", "metric": val_metrics.main, "best_epoch": result.best_epoch, "best_value": result.best_value},
        "training": {
            "epochs_run": len(result.curve), "steps": result.steps, "steps_per_epoch": steps_per_epoch, "wall_s": result.wall_s,
            "stopped_early": result.stopped_early, "first_loss": result.first_loss, "curve": result.curve,
            "frozen": sorted(built.frozen), "batch_size": train["batch_size"], "hflip": hflip,
        },
        "dataset": {
            "name": dataset.name, "synthetic": getattr(built.specs["dataset"], "synthetic", False),
            "split_sizes": {name: len(split) for name, split in dataset.splits.items()},
            "select_split": "val", "report_split": "test", "info": dict(dataset.info),
            **({"token_limit": model.text.info.max_length, "captions_at_token_limit": captions_at_limit(train_loader.tokenize, dataset)}
               if train_loader.tokenize is not None and train_split.captions is not None else {}),
        },
    }


def _prepare(run: RunSpec, host: PluginHost, cache_dir: Path, device: torch.device) -> tuple[Built, Any, SplitLoader, SplitLoader]:
    """The run's components built, its precision, and its training and evaluation loaders."""
    built = build(run, host, cache_dir, device)
    train = run.train
    precision = resolve_precision(device, train["amp"], train["channels_last"])
    if precision.channels_last:
        built.model.to(memory_format=torch.channels_last)
    model = built.model
    tokenize = model.text.tokenize if model.text is not None else None
    targets = built.objective.targets(model) if built.objective is not None else None  # e.g. the decoder's caption ids
    common = dict(vision=model.vision.info, tokenize=tokenize, precision=precision, num_workers=train["num_workers"],
                  num_classes=built.task.num_classes(built.dataset), targets=targets)
    return built, precision, SplitLoader(batch_size=train["batch_size"], **common), SplitLoader(batch_size=train["eval_batch_size"], **common)


def measure_cost(run: RunSpec, built: Built, precision: Any, train_loader: SplitLoader, eval_loader: SplitLoader) -> tuple[dict[str, Any], Any]:
    """The cost block of the run's model and the training batch its memory figure used (None
    for a cost-only task: no training, so no training-step memory)."""
    model, task, train = built.model, built.task, run.train
    quality = built.specs["task"].measures_quality
    model.eval()
    train_batch, stages = None, None
    if quality:
        batches = train_loader.train_batches(built.dataset.splits["train"], epoch=1, seed=run.seed, hflip=False, max_steps=1)
        train_batch = next(batches)
        batches.close()  # stops the DataLoader's workers
        cost_stages = getattr(task, "cost_stages", None)
        stages = cost_stages(model, built.dataset.splits["test"], eval_loader) if cost_stages is not None else None
    timing = task.timing() if hasattr(task, "timing") else {}
    cost = efficiency.measure(
        model, precision,
        image_size=model.vision.info.input_size,
        text_length=model.text.info.max_length if model.text is not None else None,
        batch_sizes=tuple(train["cost_batch_sizes"]),
        budget_s=train["cost_budget_s"],
        objective=built.objective,
        loss_fn=task.loss if quality else None, train_batch=train_batch, train_memory=quality,
        stages=stages, **timing,
    )
    return cost, train_batch


def remeasure_cost(run: RunSpec, host: PluginHost, cache_dir: Path, device: torch.device) -> dict[str, Any]:
    """A fresh cost block for ``run``: its components built again (weights as configured, not
    trained) and measured as the run measured them. Params, FLOPs, memory and the timing of
    dense models do not depend on the weights' values."""
    built, precision, train_loader, eval_loader = _prepare(run, host, cache_dir, device)
    return measure_cost(run, built, precision, train_loader, eval_loader)[0]


def _profile(built: Built, precision: Any, task: Any, train_batch: Any, out_dir: Path, infer_batch: int = 32) -> None:
    """Traces of a few training steps (forward, loss, backward; no optimizer step) and inference
    steps; weights, buffers, gradients and modes are restored afterwards."""
    from vlbench.profiling import profile_steps
    from vlbench.training import set_train_mode

    model, device = built.model, precision.device
    if train_batch is not None:
        state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        modes = {module: module.training for module in model.modules()}

        def train_step() -> None:
            with precision.autocast():
                loss = task.loss(model, train_batch)
            loss.backward()
            model.zero_grad(set_to_none=True)

        set_train_mode(model, built.frozen)
        try:
            profile_steps(train_step, out_dir, "train", device)
        finally:
            model.zero_grad(set_to_none=True)
            model.load_state_dict(state)
            for module, training in modes.items():
                module.training = training
    batch = train_batch.images if train_batch is not None else efficiency._images(
        max(infer_batch, 1), tuple(model.vision.info.input_size), device, precision.channels_last)
    text = train_batch.text if train_batch is not None and model.text is not None else None

    def inference_step() -> None:
        with torch.inference_mode(), precision.autocast():
            efficiency._forward(model, built.objective, batch, text)

    profile_steps(inference_step, out_dir, "inference", device)


def _record(run: RunSpec, started: str, content: dict[str, Any] | None, error: BaseException | None,
            host: PluginHost, fingerprint: dict[str, Any], extra_environment: Mapping[str, Any] | None = None) -> ResultRecord:
    """``extra_environment``: what an executor adds (the device a worker ran on)."""
    empty: dict[str, Any] = {}
    content = content or {}
    environment = content.get("environment", {"vlbench": vlbench.__version__, "git_commit": _git_commit()})
    return ResultRecord(
        schema_version=SCHEMA_VERSION, run_id=run.run_id, suite=run.suite, label=run.label,
        status="ok" if error is None else "error",
        error=None if error is None else {
            "type": type(error).__name__, "message": str(error),
            "traceback": "".join(traceback.format_exception(error)),
        },
        components=content.get("components") or _components_block(run, _known_specs(run, host), {}),
        config=run_config(run, host.kinds),
        metrics=content.get("metrics", empty), selection=content.get("selection", empty), cost=content.get("cost", empty),
        training=content.get("training", empty), dataset=content.get("dataset", {"name": run.choice("dataset").name if run.choice("dataset") else None}),
        environment={**environment, **(extra_environment or {}), "fingerprint": fingerprint},
        seed=run.seed, started_at=started, finished_at=_now(),
    )


def error_record(run: RunSpec, started: str, error: BaseException, host: PluginHost,
                 environment: Mapping[str, Any] | None = None) -> ResultRecord:
    """The record of a run that failed outside :func:`run_suite` (e.g. its worker process died)."""
    return _record(run, started, None, error, host, code_fingerprint(run, host), environment)


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
) -> SuiteOutcome:
    """Every run not finished before and not claimed by another live process; a failing run
    becomes an error record and the suite goes on. Each run is claimed (:mod:`vlbench.claims`)
    before it starts, so processes sharing the results folder train each run once. A record
    whose fingerprint (code versions, data content: core/fingerprint.py) differs from the
    run's is stale: it is moved to ``<suite>/stale/`` and the run goes again.

    ``profile_dir`` (``vlbench run --profile``): the runs folder; each run writes torch.profiler
    traces to ``<profile_dir>/<suite>/<run_id>/profile/``.
    """
    reporter = reporter or SilentReporter()
    outcome = SuiteOutcome()
    if not runs:
        return outcome
    suite = runs[0].suite
    board = claims or ClaimBoard(results_dir, suite)

    def notify(data: dict[str, Any]) -> None:
        host.run_finished(data, report=warn)

    clean_leftovers(results_dir, suite, board, cache_dir, warn)
    replay_unobserved(results_dir, suite, {run.run_id for run in runs}, board, notify)
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


def _stale_or_finished(results_dir: Path, run: RunSpec, fingerprint: dict[str, Any]) -> tuple[Path, dict[str, Any], str] | bool | None:
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


def _run_one(run: RunSpec, host: PluginHost, results_dir: Path, cache_dir: Path, device: torch.device, reporter: Reporter,
             profile_dir: Path | None, outcome: SuiteOutcome, fingerprint: dict[str, Any],
             environment: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Execute and save one run; a failure inside it becomes its error record, a failure to
    save stops the suite (StorageError)."""
    started, content, error = _now(), None, None
    try:
        traces = None if profile_dir is None else Path(profile_dir) / run.suite / run.run_id / "profile"
        content = execute(run, host, cache_dir, device, reporter, traces)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure inside a run becomes its record
        error = exc
    record = _record(run, started, content, error, host, fingerprint, environment)
    try:
        path = _save(record, results_dir, run)
    except (RecordError, TypeError) as exc:  # what the run produced breaks the schema: that is its failure
        error = exc
        record = _record(run, started, None, exc, host, fingerprint, environment)
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
