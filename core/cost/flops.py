"""FLOPs and MACs of one inference forward, per component, counted by
torch.utils.flop_counter; fvcore's count of the vision tower's multiply-adds as a cross-check."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from vlbench.cost.inputs import (
    fuse,
    input_shape,
    measured_objective,
    model_device,
    objective_name,
    synthetic_images,
    synthetic_text,
)
from vlbench.objectives import ObjectiveSpec, VLModel
from vlbench.types.encoders import EncoderOutput

FVCORE_TOLERANCE = 0.02  # |MACs - fvcore| / fvcore
FLOP_CONVENTION = (
    "torch.utils.flop_counter.FlopCounterMode counts convolution, matrix multiplication and "
    "attention (QK^T and AV) at 2 FLOPs per multiply-add, so MACs = FLOPs / 2 for every counted op. "
    "Normalisation, activation, pooling and other elementwise ops are not counted "
    "(fvcore and timm's published GMACs add batch-norm at 1 per element)."
)


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


def count_component(
    name: str, component: nn.Module, fn: Callable[..., Any], *args: Any, depth: int
) -> tuple[dict[str, Any], Any]:
    """FLOPs and MACs of ``fn(*args)``, which runs ``component`` (named ``name``): in total, per
    op, and per submodule down to ``depth`` levels; with what ``fn`` returned."""
    # depth=None: every level (torch accepts None at run time; its annotation says int)
    counter = FlopCounterMode(display=False, depth=None, custom_mapping=_EXTRA_FLOP_FORMULAS)  # type: ignore[arg-type]
    with counter:
        out = _Scope(name, component, fn)(*args)
    counts = counter.get_flop_counts()
    flops = counter.get_total_flops()
    prefix = f"{_Scope.__name__}.{name}."
    modules = {
        path[len(prefix) :]: sum(ops.values())
        for path, ops in counts.items()
        if path.startswith(prefix) and path[len(prefix) :].count(".") < depth
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
    size, length = input_shape(model, image_size, text_length)
    objective = measured_objective(model, objective)
    device = model_device(model)
    images = synthetic_images(batch, size, device)
    text = synthetic_text(model, batch, length, device) if length is not None else None
    components: dict[str, Any] = {}
    with torch.inference_mode(), _mha_fastpath(False), _no_grad_parameters(model):
        components["vision"], image_out = count_component("vision", model.vision, model.vision, images, depth=module_depth)
        text_out = None
        if text is not None:
            components["text"], text_out = count_component("text", model.text, model.text, text, depth=module_depth)
        if objective is not None:
            components["fusion"], _ = count_component(
                "fusion", model.fusion, lambda i, t: fuse(model, objective, i, t), image_out, text_out, depth=module_depth
            )
    flops = sum(part["flops"] for part in components.values())
    return {
        "unit_flops": "FLOPs",
        "unit_macs": "MACs",
        "convention": FLOP_CONVENTION,
        "objective": objective_name(objective),
        "input": {"image": [batch, 3, *size], "text_length": length, "batch": batch},
        "components": components,
        "total": {"flops": flops, "macs": flops // 2},
    }


# fvcore handles that do not count multiply-adds (by_operator names).
_FVCORE_NON_MAC = {
    "batch_norm",
    "group_norm",
    "layer_norm",
    "instance_norm",
    "upsample_nearest2d",
    "upsample_bilinear2d",
    "adaptive_avg_pool2d",
    "grid_sampler",
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
    fused: list[Any] = [m for m in module.modules() if getattr(m, "fused_attn", None) is True]
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
