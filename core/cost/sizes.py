"""Sizes: parameters per component, and bytes of the weights saved in half precision."""

from __future__ import annotations

import io
from typing import Any

import torch
from torch import nn

from vlbench.objectives import VLModel

MB = 10**6  # the record's MB; stated in every block that uses it
FP16_TOLERANCE = 0.05  # |bytes - 2 x params| / bytes


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
    return {
        "bytes": size,
        "mb": size / MB,
        "unit_mb": "MB = 10^6 bytes",
        "format": "torch.save of the state dict, floating tensors as float16",
        "params": params,
        "bytes_over_2x_params": size / (2 * params) if params else None,
    }
