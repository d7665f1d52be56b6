"""The hardware and software every cost figure of a record was measured on."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

from vlbench.data import Precision, usable_cpu_count


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
