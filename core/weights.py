"""Loading weights from a local file, safely (no pickle code execution)."""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlbench.errors import UserError


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file with ``weights_only=True``.

    A checkpoint that wraps the weights (``{"state_dict": ...}`` or ``{"model": ...}``) is
    unwrapped. Raises :class:`UserError` naming the file when it is missing or unreadable.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist: give `weights` a path to a local .safetensors or .pt/.pth file.")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))  # unwrapped and checked below, like torch.load's
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's own text advises weights_only=False, which vlbench never does; keep its reason only.
        reason = re.search(r"WeightsUnpickler error: ([^\n]*?)\.(?: |$)", str(exc), re.MULTILINE)
        raise UserError(
            f"weights file {path} holds pickled objects, not only tensors ({reason.group(1) if reason else 'refused by weights_only=True'}). "
            "vlbench never runs pickled code: save the weights alone, with torch.save(model.state_dict(), path) or as .safetensors."
        ) from None
    except Exception as exc:  # any reader failure is the file's fault
        raise UserError(
            f"weights file {path} could not be read ({type(exc).__name__}: {exc}). vlbench reads "
            ".safetensors, or torch files with weights_only=True (plain tensors, no pickled code)."
        ) from None
    for key in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"weights file {path} holds no state dict of tensors.")
    return state


def strip_prefix(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Drop ``prefix`` from the keys that have it, when any has it."""
    if not any(k.startswith(prefix) for k in state):
        return state
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}


def load_into(
    module: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    what: str,
    source: str,
    ignore: Callable[[str], bool] = lambda key: False,
) -> None:
    """Load ``state`` into ``module``; every key must match in name and shape, else a
    :class:`UserError` naming ``source`` and a few offending keys (never a half-loaded model
    passed off as pretrained)."""
    state = {k: v for k, v in state.items() if not ignore(k)}
    own = module.state_dict()
    problems = []
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if k in own and v.shape != own[k].shape
    ]
    if mismatched:
        problems.append(f"wrong shapes: {_few(mismatched)}")
    else:
        result = module.load_state_dict(state, strict=False)
        if result.missing_keys:
            problems.append(f"missing keys: {_few(result.missing_keys)}")
        if result.unexpected_keys:
            problems.append(f"unexpected keys: {_few(result.unexpected_keys)}")
    if problems:
        raise UserError(f"weights {source} do not fit {what} ({'; '.join(problems)}).")


def _few(keys: Sequence[str], n: int = 4) -> str:
    more = f" and {len(keys) - n} more" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more
