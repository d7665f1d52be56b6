"""Cost of a model, measured in the process that measured its quality.

Every figure states its unit and the hardware it was taken on (:func:`fingerprint`).
"""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from vlbench.data import Precision
from vlbench.objectives import VLModel


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
    device = precision.device
    cuda = device.type == "cuda"
    return {
        "device": device.type,
        "device_name": torch.cuda.get_device_name(device) if cuda else _cpu_model(),
        "cpu_model": _cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if cuda else None,
        "cudnn": torch.backends.cudnn.version() if cuda else None,
        "precision": precision.name,
        "channels_last": precision.channels_last,
        "compile": compile_mode,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32 if cuda else None,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
