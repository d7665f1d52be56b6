"""Cost of a model, measured in the process that measured its quality.

Every figure states its unit and the hardware it was taken on (:func:`fingerprint`).
:func:`measure` assembles a run record's ``cost`` block; each part is usable on its own:

* :func:`parameter_counts`: params per component, trainable vs frozen;
* :func:`count_flops`: FLOPs and MACs per component at the run's input shape;
* :func:`time_stage`, :func:`throughput`, :func:`latency`: timm's benchmark protocol
  (warm-up, device synchronised after every call, inference mode, declared precision and
  memory format) with the number of iterations adapted to a time budget;
* :func:`peak_memory`, :func:`inference_memory`, :func:`train_step_memory`: peak bytes of
  an inference forward and of a training step;
* :func:`fp16_size`: bytes of the state dict saved in half precision;
* :func:`run_stages`: extra timed stages a task declares (:class:`vlbench.types.CostStage`);
* :func:`check_cost_invariants`: what must hold in every cost block.

docs/cost.md explains every field.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from vlbench import interference
from vlbench.data import Precision, usable_cpu_count
from vlbench import objectives
from vlbench.objectives import ObjectiveSpec, VLModel
from vlbench.training import set_train_mode
from vlbench.types import Batch, CostStage, EncoderOutput, TokenizedText

T = TypeVar("T")

MB = 10**6  # the record's MB; stated in every block that uses it
FVCORE_TOLERANCE = 0.02  # |MACs - fvcore| / fvcore
FP16_TOLERANCE = 0.05  # |bytes - 2 x params| / bytes
FLOP_CONVENTION = (
    "torch.utils.flop_counter.FlopCounterMode counts convolution, matrix multiplication and "
    "attention (QK^T and AV) at 2 FLOPs per multiply-add, so MACs = FLOPs / 2 for every counted op. "
    "Normalisation, activation, pooling and other elementwise ops are not counted "
    "(fvcore and timm's published GMACs add batch-norm at 1 per element)."
)
TIMING_PROTOCOL = (
    "timm's benchmark protocol: synthetic inputs, torch.inference_mode, the run's autocast dtype and "
    "memory format; warm-up of at least `warmup_iterations` calls and 20% of the budget; then each "
    "call timed with time.perf_counter, the device synchronised after it, until at least the minimum "
    "number of calls and the rest of the budget are spent (`iterations`); percentiles by linear interpolation"
)
_WARMUP_SHARE = 0.2


# ---------------------------------------------------------------- parameters


def parameter_counts(model: VLModel) -> dict[str, Any]:
    """Params per component, trainable vs frozen; ``total`` is the sum of the components."""
    parts = {}
    for name, module in model.components().items():
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
        parts[name] = {"trainable": trainable, "frozen": frozen, "total": trainable + frozen}
    total = {key: sum(part[key] for part in parts.values()) for key in ("trainable", "frozen", "total")}
    assert total["total"] == sum(p.numel() for p in model.parameters()), "a parameter is shared between components"
    return {"unit": "parameters", "components": parts, "total": total}


# ---------------------------------------------------------------- inputs


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _defaults(model: VLModel, image_size: Sequence[int] | None, text_length: int | None) -> tuple[tuple[int, int], int | None]:
    size = tuple(image_size) if image_size is not None else tuple(model.vision.info.input_size)
    if model.text is None:
        return size, None  # type: ignore[return-value]
    return size, text_length or model.text.info.max_length  # type: ignore[return-value]


def _images(batch: int, size: tuple[int, int], device: torch.device, channels_last: bool = False) -> torch.Tensor:
    images = torch.randn(batch, 3, *size, device=device)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def _text(model: VLModel, batch: int, length: int, device: torch.device) -> TokenizedText:
    """Captions that fill all ``length`` positions with real tokens: the most work the tower does."""
    max_length = model.text.info.max_length
    if length > max_length:
        raise ValueError(f"text_length {length} exceeds the text encoder's max_length {max_length}")
    tokens = model.tokenize([" ".join(["person"] * max_length)] * batch)
    return TokenizedText(tokens.input_ids[:, :length], tokens.attention_mask[:, :length]).to(device)


def _objective(model: VLModel, objective: ObjectiveSpec | str | None) -> ObjectiveSpec | None:
    """The objective whose forward is measured; None: a model without a fusion (encoders only)."""
    return objectives.resolve(objective, model.fusion)


def _fuse(model: VLModel, objective: ObjectiveSpec | None, image: EncoderOutput, text: EncoderOutput | None) -> Any:
    """The fusion's share of the objective's forward, on encoder outputs (none without a fusion)."""
    return None if objective is None else objective.fuse(model, image, text)


def _forward(model: VLModel, objective: ObjectiveSpec | None, images: torch.Tensor, text: TokenizedText | None) -> Any:
    """The objective's whole inference forward: the encoders and the fusion."""
    return _fuse(model, objective, model.vision(images), None if text is None else model.text(text))


def _name(objective: ObjectiveSpec | None) -> str:
    return "encoders only" if objective is None else objective.name


# ---------------------------------------------------------------- FLOPs and MACs


def _cpu_sdpa_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


# The fused attention kernels of CPU (and out-of-tree) backends, which torch's registry lacks.
_EXTRA_FLOP_FORMULAS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flops,
    torch.ops.aten._scaled_dot_product_fused_attention_overrideable: _cpu_sdpa_flops,
}


@contextlib.contextmanager
def _mha_fastpath(enabled: bool) -> Iterator[None]:
    """The nn.MultiheadAttention / TransformerEncoderLayer fast path runs one opaque kernel
    whose matmuls no dispatch-level counter can see; the regular path runs the same math."""
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(enabled)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


@contextlib.contextmanager
def _no_grad_parameters(model: nn.Module) -> Iterator[None]:
    """Counting with every parameter's requires_grad off, then restored.

    FlopCounterMode's module tracker hooks the backward of every input that requires grad;
    a parameter expanded inside inference_mode (timm's attention-pool latent query in SigLIP)
    is such an input without a grad_fn, and the tracker crashes on it (torch 2.14).
    """
    flags = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


class _Scope(nn.Module):
    """Names a component in FlopCounterMode's module paths, even when a method other than
    ``forward`` runs it (``fusion.embed_image``)."""

    def __init__(self, name: str, component: nn.Module, fn: Callable[..., Any]):
        super().__init__()
        self.add_module(name, component)
        self.fn = fn

    def forward(self, *args: Any) -> Any:
        return self.fn(*args)


def _count(name: str, component: nn.Module, fn: Callable[..., Any], *args: Any, depth: int) -> tuple[dict[str, Any], Any]:
    counter = FlopCounterMode(display=False, depth=None, custom_mapping=_EXTRA_FLOP_FORMULAS)
    with counter:
        out = _Scope(name, component, fn)(*args)
    counts = counter.get_flop_counts()
    flops = counter.get_total_flops()
    prefix = f"{_Scope.__name__}.{name}."
    modules = {
        path[len(prefix):]: sum(ops.values())
        for path, ops in counts.items()
        if path.startswith(prefix) and path[len(prefix):].count(".") < depth
    }
    ops = {str(op): n for op, n in counts.get("Global", {}).items()}
    return {"flops": flops, "macs": flops // 2, "ops": ops, "modules": modules}, out


def count_flops(
    model: VLModel,
    image_size: Sequence[int] | None = None,
    text_length: int | None = None,
    batch: int = 1,
    *,
    objective: ObjectiveSpec | str | None = None,
    module_depth: int = 2,
) -> dict[str, Any]:
    """FLOPs and MACs of one inference forward, per component and in total.

    ``image_size`` (H, W) and ``text_length`` default to what the encoders are built for.
    The fusion runs on the encoders' real outputs, through the objective's methods
    (embedding: ``embed_image`` + ``embed_text``; classification: ``forward``).
    ``modules`` breaks each component down to ``module_depth`` levels of submodules.
    """
    size, length = _defaults(model, image_size, text_length)
    objective = _objective(model, objective)
    device = _device(model)
    images = _images(batch, size, device)
    text = _text(model, batch, length, device) if length is not None else None
    components: dict[str, Any] = {}
    with torch.inference_mode(), _mha_fastpath(False), _no_grad_parameters(model):
        components["vision"], image_out = _count("vision", model.vision, model.vision, images, depth=module_depth)
        text_out = None
        if text is not None:
            components["text"], text_out = _count("text", model.text, model.text, text, depth=module_depth)
        if objective is not None:
            components["fusion"], _ = _count(
                "fusion", model.fusion, lambda i, t: _fuse(model, objective, i, t), image_out, text_out, depth=module_depth
            )
    flops = sum(part["flops"] for part in components.values())
    return {
        "unit_flops": "FLOPs",
        "unit_macs": "MACs",
        "convention": FLOP_CONVENTION,
        "objective": _name(objective),
        "input": {"image": [batch, 3, *size], "text_length": length, "batch": batch},
        "components": components,
        "total": {"flops": flops, "macs": flops // 2},
    }


# fvcore handles that do not count multiply-adds (by_operator names).
_FVCORE_NON_MAC = {
    "batch_norm", "group_norm", "layer_norm", "instance_norm", "upsample_nearest2d",
    "upsample_bilinear2d", "adaptive_avg_pool2d", "grid_sampler",
}


class _Tensors(nn.Module):
    """An encoder whose outputs torch.jit.trace (fvcore) can follow."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, images: torch.Tensor) -> Any:
        out = self.encoder(images)
        return (out.tokens, out.pooled) if isinstance(out, EncoderOutput) else out


@contextlib.contextmanager
def _unfused_attention(module: nn.Module) -> Iterator[None]:
    """timm attention blocks call F.scaled_dot_product_attention when ``fused_attn`` is set;
    fvcore has no handle for it and would skip the QK^T and AV products."""
    fused = [m for m in module.modules() if getattr(m, "fused_attn", None) is True]
    for m in fused:
        m.fused_attn = False
    try:
        yield
    finally:
        for m in fused:
            m.fused_attn = True


def fvcore_macs(encoder: nn.Module, images: torch.Tensor) -> dict[str, Any]:
    """fvcore's count of the multiply-adds :func:`count_flops` counts, for cross-checking.

    fvcore counts one per multiply-add for convolutions and matmuls (its "flops" are MACs);
    its normalisation and pooling handles are reported apart under ``excluded``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's use of the deprecated torch.jit, and tracer warnings
        try:
            from fvcore.nn import FlopCountAnalysis
        except ImportError:
            return {"measured": False, "reason": "fvcore is not installed"}
        with _unfused_attention(encoder), torch.no_grad():
            analysis = FlopCountAnalysis(_Tensors(encoder), (images,))
            by_operator = analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).by_operator()
    return {
        "measured": True,
        "macs": sum(n for op, n in by_operator.items() if op not in _FVCORE_NON_MAC),
        "excluded": {op: n for op, n in by_operator.items() if op in _FVCORE_NON_MAC},
        "input": list(images.shape),
    }


# ---------------------------------------------------------------- timing


def _synchronizer(device: torch.device | None) -> Callable[[], None]:
    if device is None or device.type == "cpu":
        return lambda: None
    return lambda: torch.accelerator.synchronize(device)


def time_stage(
    fn: Callable[[], object],
    budget_s: float = 1.0,
    *,
    device: torch.device | None = None,
    warmup: int = 2,
    min_iters: int = 3,
    max_iters: int = 100_000,
) -> dict[str, Any]:
    """Per-call latency of ``fn`` in ms: p50 / p90 / p99 over as many calls as ``budget_s`` allows.

    Warm-up takes at least ``warmup`` calls and 20% of the budget; then calls are timed one
    by one (the device synchronised after each) until both ``min_iters`` calls and the rest
    of the budget are spent, or ``max_iters``. The caller sets inference mode and autocast.
    """
    sync = _synchronizer(device)
    warm_until = time.perf_counter() + _WARMUP_SHARE * budget_s
    warmed = 0
    while warmed < warmup or (time.perf_counter() < warm_until and warmed < max_iters):
        fn()
        sync()
        warmed += 1
    times: list[float] = []
    until = time.perf_counter() + (1 - _WARMUP_SHARE) * budget_s
    while len(times) < min_iters or (time.perf_counter() < until and len(times) < max_iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1e3
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {
        "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
        "mean_ms": float(ms.mean()), "min_ms": float(ms.min()),
        "iterations": len(times), "warmup_iterations": warmed, "budget_s": budget_s,
    }


@contextlib.contextmanager
def _inference(precision: Precision) -> Iterator[None]:
    with torch.inference_mode(), precision.autocast():
        yield


def _with_backoff(batch: int, device: torch.device, attempt: Callable[[int], T]) -> tuple[int | None, T | None, list[int]]:
    """``attempt(batch)``, halving ``batch`` on out-of-memory; (batch used, result, batches that failed)."""
    failed: list[int] = []
    while batch >= 1:
        out_of_memory = False
        try:
            return batch, attempt(batch), failed
        except torch.OutOfMemoryError:
            out_of_memory = True  # free outside the handler: its traceback still holds the tensors
        if out_of_memory:
            failed.append(batch)
            batch //= 2
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return None, None, failed


def throughput(
    encoder: nn.Module,
    precision: Precision,
    image_size: Sequence[int],
    batch_sizes: Sequence[int] = (1, 32),
    budget_s: float = 1.0,
    **timing: Any,
) -> list[dict[str, Any]]:
    """Images/s of a vision encoder on synthetic images, one entry per requested batch size.

    A batch that does not fit is halved until it does (``batch`` is what ran, ``oom_batches``
    what did not). ``images_per_s`` is timm's figure (batch x iterations / total time);
    ``images_per_s_p50`` uses the median call. ``timing`` goes to :func:`time_stage`.
    """
    device = precision.device

    def attempt(batch: int) -> dict[str, Any]:
        images = _images(batch, tuple(image_size), device, precision.channels_last)
        with _inference(precision):
            return time_stage(lambda: encoder(images), budget_s, device=device, **timing)

    entries = []
    for requested in batch_sizes:
        batch, stats, failed = _with_backoff(requested, device, attempt)
        entry: dict[str, Any] = {"requested_batch": requested, "batch": batch, "oom_batches": failed}
        if stats is not None:
            entry |= {"images_per_s": batch * 1e3 / stats["mean_ms"], "images_per_s_p50": batch * 1e3 / stats["p50_ms"], **stats}
        entries.append(entry)
    return entries


def latency(
    model: VLModel,
    precision: Precision,
    image_size: Sequence[int] | None = None,
    text_length: int | None = None,
    budget_s: float = 1.0,
    *,
    objective: ObjectiveSpec | str | None = None,
    **timing: Any,
) -> dict[str, Any]:
    """Batch-1 latency of each tower alone (encoder-only) and of the objective's whole forward."""
    size, length = _defaults(model, image_size, text_length)
    objective = _objective(model, objective)
    device = precision.device
    images = _images(1, size, device, precision.channels_last)
    text = _text(model, 1, length, device) if length is not None else None
    out: dict[str, Any] = {"unit": "ms", "batch": 1, "protocol": TIMING_PROTOCOL}
    with _inference(precision):
        out["vision"] = time_stage(lambda: model.vision(images), budget_s, device=device, **timing)
        if text is not None:
            out["text"] = time_stage(lambda: model.text(text), budget_s, device=device, **timing)
        out["model"] = time_stage(lambda: _forward(model, objective, images, text), budget_s, device=device, **timing)
    return out


# ---------------------------------------------------------------- task-declared stages


def run_stages(stages: Mapping[str, CostStage], precision: Precision, budget_s: float = 1.0, **timing: Any) -> dict[str, Any]:
    """Time every declared stage under inference mode and the run's autocast."""
    out: dict[str, Any] = {}
    with _inference(precision):
        for name, stage in stages.items():
            stats = time_stage(stage.fn, budget_s, device=precision.device, **timing)
            out[name] = {"items": stage.items, "unit": stage.unit, "group": stage.group,
                         "items_per_s": stage.items * 1e3 / stats["mean_ms"], **stats}
    for name, stage in stages.items():
        if stage.group is None or stage.items == 1:
            continue
        single = next((other for other, s in stages.items() if s.group == stage.group and s.items == 1), None)
        if single is not None:
            out[name]["single_stage"] = single
            out[name]["batched_over_n_single"] = out[name]["p50_ms"] / (stage.items * out[single]["p50_ms"])
    return out


# ---------------------------------------------------------------- memory


def _held_bytes(track: Sequence[object]) -> int:
    """Bytes of the distinct storages that modules (parameters, gradients, buffers) and
    optimizers (state) hold."""
    tensors: list[torch.Tensor] = []
    for owner in track:
        if isinstance(owner, nn.Module):
            tensors += [t for p in owner.parameters() for t in (p, p.grad) if t is not None]
            tensors += list(owner.buffers())
        elif isinstance(owner, torch.optim.Optimizer):
            tensors += [t for state in owner.state.values() for t in state.values() if isinstance(t, torch.Tensor)]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Kineto logs every profiler start and stop to the process's stderr, whatever the log
    level; silence the memory pass only."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_memory(fn: Callable[[], object], device: torch.device, track: Sequence[object] = ()) -> dict[str, Any]:
    """Peak bytes while ``fn`` runs once: ``peak_bytes = baseline_bytes + peak_above_baseline_bytes``.

    CUDA: the caching allocator's ``max_memory_allocated`` after ``reset_peak_memory_stats``;
    the baseline is everything allocated before. Elsewhere: torch.profiler's allocator events
    (``profile_memory``), whose running sum inside ``fn`` gives the peak above the start; the
    baseline is what the modules and optimizers in ``track`` hold.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        baseline = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        return {"measured": True, "unit": "bytes", "method": "torch.cuda.max_memory_allocated",
                "peak_bytes": peak, "baseline_bytes": baseline, "peak_above_baseline_bytes": peak - baseline}
    baseline = _held_bytes(track)
    profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True)
    # Kineto also warns, inside fn, of every block freed that was allocated before the start:
    # expected here, since baseline_bytes accounts for those blocks.
    with _quiet_stderr():
        profiler.__enter__()
        try:
            fn()
        finally:
            profiler.__exit__(None, None, None)
    cpu = torch.autograd.DeviceType.CPU
    events = sorted(
        (e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]" and e.device_type() == cpu),
        key=lambda e: e.start_ns(),
    )
    if not events:
        return {"measured": False, "reason": "the profiler recorded no allocations"}
    live = np.cumsum([e.nbytes() for e in events])
    above = max(0, int(live.max()))
    return {"measured": True, "unit": "bytes", "method": "torch.profiler allocator events (profile_memory)",
            "peak_bytes": baseline + above, "baseline_bytes": baseline, "peak_above_baseline_bytes": above,
            "baseline_of": "parameters, gradients, buffers and optimizer state held before"}


def inference_memory(
    model: VLModel,
    precision: Precision,
    batch: int = 32,
    *,
    objective: ObjectiveSpec | str | None = None,
    image_size: Sequence[int] | None = None,
    text_length: int | None = None,
) -> dict[str, Any]:
    """Peak bytes of the objective's inference forward on ``batch`` synthetic images and full
    captions, halved on out-of-memory."""
    objective = _objective(model, objective)
    size, length = _defaults(model, image_size, text_length)
    device = precision.device

    def attempt(n: int) -> dict[str, Any]:
        def forward() -> None:
            images = _images(n, size, device, precision.channels_last)
            text = _text(model, n, length, device) if length is not None else None
            with _inference(precision):
                _forward(model, objective, images, text)

        return peak_memory(forward, device, (model,))

    used, result, failed = _with_backoff(batch, device, attempt)
    if result is None:
        return {"measured": False, "reason": f"out of memory down to batch 1 (tried {failed})"}
    return {**result, "requested_batch": batch, "batch": used, "oom_batches": failed, "of": f"{_name(objective)} forward, synthetic input"}


def train_step_memory(
    model: VLModel,
    precision: Precision,
    batch: int = 32,
    *,
    loss_fn: Callable[[VLModel, Batch], torch.Tensor] | None = None,
    train_batch: Batch | None = None,
    objective: ObjectiveSpec | str | None = None,
    image_size: Sequence[int] | None = None,
    text_length: int | None = None,
) -> dict[str, Any]:
    """Peak bytes of two AdamW training steps in the order of the training loop (forward,
    zero_grad, backward, step): the second forward runs while the first step's gradients and
    the optimizer state are held. With the run's frozen towers and autocast.

    With ``loss_fn`` and ``train_batch`` (the task's loss on a real batch) that is what runs;
    otherwise a synthetic loss of the objective on ``batch`` random images and full captions,
    halved on out-of-memory. Weights, buffers, gradients, train/eval modes and the RNG are as
    before when it returns.
    """
    frozen = {name for name, part in model.components().items() if not any(p.requires_grad for p in part.parameters())}
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        return {"measured": False, "reason": "every parameter is frozen"}
    if train_batch is not None and loss_fn is None:
        raise ValueError("train_batch needs the loss_fn that goes with it")
    objective = _objective(model, objective)
    if objective is None and train_batch is None:
        return {"measured": False, "reason": "no fusion: no objective to train"}
    size, length = _defaults(model, image_size, text_length)
    device = precision.device
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    modes = {module: module.training for module in model.modules()}

    def attempt(n: int) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(trainable, lr=0.0)

        def steps() -> None:
            # Both steps inside the measurement: the CPU profiler only sees frees of what it saw allocated.
            for _ in range(2):
                with precision.autocast():
                    if train_batch is not None:
                        loss = loss_fn(model, train_batch)
                    else:
                        text = _text(model, n, length, device) if length is not None else None
                        loss = objective.synthetic_loss(model, _images(n, size, device, precision.channels_last), text)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        return peak_memory(steps, device, (model,))

    requested = len(train_batch.index) if train_batch is not None else batch
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        set_train_mode(model, frozen)
        try:
            if train_batch is not None:
                used, result, failed = requested, attempt(requested), []
            else:
                used, result, failed = _with_backoff(batch, device, attempt)
        finally:
            for p in model.parameters():
                p.grad = None
            model.load_state_dict(state)
            for module, training in modes.items():
                module.training = training
    if result is None:
        return {"measured": False, "reason": f"out of memory down to batch 1 (tried {failed})"}
    return {**result, "requested_batch": requested, "batch": used, "oom_batches": failed,
            "loss": "task loss on a training batch" if train_batch is not None else f"synthetic {_name(objective)} loss",
            "steps": 2, "optimizer": "AdamW"}


# ---------------------------------------------------------------- size on disk


def fp16_size(model: nn.Module) -> dict[str, Any]:
    """Bytes of ``torch.save(state_dict)`` with every floating tensor cast to float16.

    Tied weights stay tied (one storage, saved once), as :func:`parameter_counts` counts them once.
    """
    halves: dict[int, torch.Tensor] = {}
    state = {}
    for key, value in model.state_dict(keep_vars=True).items():
        if id(value) not in halves:
            halves[id(value)] = value.detach().half() if value.is_floating_point() else value.detach()
        state[key] = halves[id(value)]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    size = buffer.getbuffer().nbytes
    params = sum(p.numel() for p in model.parameters())
    return {"bytes": size, "mb": size / MB, "unit_mb": "MB = 10^6 bytes",
            "format": "torch.save of the state dict, floating tensors as float16",
            "params": params, "bytes_over_2x_params": size / (2 * params) if params else None}


# ---------------------------------------------------------------- environment


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fingerprint(precision: Precision, compile_mode: str = "none") -> dict[str, Any]:
    """Hardware and software that every cost figure of a record was measured on."""
    import timm

    device = precision.device
    cuda = device.type == "cuda"
    properties = torch.cuda.get_device_properties(device) if cuda else None
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else _cpu_model(),
        "device_memory_bytes": properties.total_memory if properties else None,
        "device_capability": f"{properties.major}.{properties.minor}" if properties else None,
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "cpu_cores_usable": usable_cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "precision": precision.name,
        "channels_last": precision.channels_last,
        "compile": compile_mode,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if cuda else None,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32 if cuda else None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark if cuda else None,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# ---------------------------------------------------------------- the cost block


def measure(
    model: VLModel,
    precision: Precision,
    image_size: Sequence[int] | None = None,
    text_length: int | None = None,
    batch_sizes: Sequence[int] = (1, 32),
    budget_s: float = 1.0,
    *,
    objective: ObjectiveSpec | str | None = None,
    loss_fn: Callable[[VLModel, Batch], torch.Tensor] | None = None,
    train_batch: Batch | None = None,
    stages: Mapping[str, CostStage] | None = None,
    compile_mode: str = "none",
    cross_check: bool = True,
    train_memory: bool = True,
    **timing: Any,
) -> dict[str, Any]:
    """A run record's ``cost`` block. ``budget_s`` is the time budget of each timed figure.

    The model must already sit on ``precision.device`` in its memory format, in eval mode.
    ``loss_fn`` with ``train_batch`` makes the training-step memory use the task's loss on a
    real batch; ``stages`` are the task's extra timed stages; ``cross_check`` adds fvcore's
    count of the vision tower's MACs; ``train_memory=False`` skips the training-step memory
    (encoder-only runs: ``{"measured": false, "reason": ...}``). ``problems`` lists what :func:`check_cost_invariants` found;
    ``conditions`` says how busy the machine was meanwhile (:mod:`vlbench.interference`).
    """
    size, length = _defaults(model, image_size, text_length)
    objective = _objective(model, objective)
    device = precision.device
    watch = interference.Watch(device)
    cost: dict[str, Any] = {
        "params": parameter_counts(model),
        "flops": count_flops(model, size, length, objective=objective),
        "latency": latency(model, precision, size, length, budget_s, objective=objective, **timing),
        "throughput": {"unit": "images/s", "of": "vision encoder, synthetic images", "protocol": TIMING_PROTOCOL,
                       "batches": throughput(model.vision, precision, size, batch_sizes, budget_s, **timing)},
    }
    cost["memory"] = {
        "unit": "bytes",
        "inference": inference_memory(model, precision, max(batch_sizes), objective=objective, image_size=size, text_length=length),
        "train_step": train_step_memory(model, precision, max(batch_sizes), loss_fn=loss_fn, train_batch=train_batch,
                                        objective=objective, image_size=size, text_length=length)
        if train_memory else {"measured": False, "reason": "not measured: encoder-only run (no training)"},
    }
    cost["fp16_size"] = fp16_size(model)
    if stages:
        cost["stages"] = {"unit": "ms", "protocol": TIMING_PROTOCOL, **run_stages(stages, precision, budget_s, **timing)}
    if objective is not None and objective.extra_cost is not None:
        cost[objective.name] = objective.extra_cost(model, precision, size, batch_sizes, budget_s,
                                                    loss_fn=loss_fn, train_batch=train_batch, **timing)
    if cross_check:
        cost["checks"] = {"fvcore_vision": fvcore_macs(model.vision, _images(1, size, device))}
    cost["hardware"] = fingerprint(precision, compile_mode)
    cost["conditions"] = watch.finish(cost)
    cost["problems"] = check_cost_invariants(cost)
    return cost


# ---------------------------------------------------------------- invariants


def _relative(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else (0.0 if a == b else math.inf)


def check_cost_invariants(cost: Mapping[str, Any]) -> list[str]:
    """What is wrong with a cost block; empty when it is consistent. Checks only the parts present.

    Params and FLOPs: components sum to the total; FLOPs = 2 x MACs. fp16 size within 5% of
    2 bytes per parameter. Latency percentiles ordered. Throughput never ran a larger batch
    than asked. The vision tower's MACs within 2% of fvcore's where it was counted.
    """
    try:
        return _invariant_problems(cost)
    except (KeyError, TypeError, AttributeError) as exc:  # a record from elsewhere, read back from JSON
        return [f"cost block is malformed ({type(exc).__name__}: {exc})"]


def _invariant_problems(cost: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    params = cost.get("params")
    if params:
        for key in ("trainable", "frozen", "total"):
            parts = sum(part[key] for part in params["components"].values())
            if parts != params["total"][key]:
                problems.append(f"params: {key} components sum to {parts}, total says {params['total'][key]}")
    flops = cost.get("flops")
    if flops:
        for name, part in [*flops["components"].items(), ("total", flops["total"])]:
            if part["flops"] != 2 * part["macs"]:
                problems.append(f"flops: {name} has {part['flops']} FLOPs but {part['macs']} MACs (FLOPs must be 2 x MACs)")
            if "ops" in part and sum(part["ops"].values()) != part["flops"]:
                problems.append(f"flops: {name}'s ops sum to {sum(part['ops'].values())}, not {part['flops']}")
        parts = sum(part["flops"] for part in flops["components"].values())
        if parts != flops["total"]["flops"]:
            problems.append(f"flops: components sum to {parts} FLOPs, total says {flops['total']['flops']}")
    size = cost.get("fp16_size")
    if size and params:
        expected = 2 * params["total"]["total"]
        if _relative(expected, size["bytes"]) >= FP16_TOLERANCE:
            problems.append(f"fp16_size: {size['bytes']} bytes vs 2 x {params['total']['total']} params = {expected} (more than 5% apart)")
    timed = [(f"latency.{k}", v) for k, v in cost.get("latency", {}).items() if isinstance(v, dict)]
    timed += [(f"stages.{k}", v) for k, v in cost.get("stages", {}).items() if isinstance(v, dict)]
    timed += [(f"throughput.batch{e['requested_batch']}", e) for e in cost.get("throughput", {}).get("batches", []) if e.get("batch")]
    for where, stats in timed:
        if not 0 < stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"]:
            ms = ", ".join(str(stats[key]) for key in ("p50_ms", "p90_ms", "p99_ms"))
            problems.append(f"{where}: percentiles out of order or not positive ({ms} ms)")
    for entry in cost.get("throughput", {}).get("batches", []):
        if entry["batch"] is not None and entry["batch"] > entry["requested_batch"]:
            problems.append(f"throughput: ran batch {entry['batch']} where {entry['requested_batch']} was asked")
    fvcore = cost.get("checks", {}).get("fvcore_vision", {})
    if fvcore.get("measured") and flops:
        ours = flops["components"]["vision"]["macs"]
        if _relative(ours, fvcore["macs"]) > FVCORE_TOLERANCE:
            problems.append(f"flops: vision {ours} MACs vs fvcore's {fvcore['macs']} (more than 2% apart)")
    return problems
