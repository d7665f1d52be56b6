"""Loading weights from a local file, safely (no pickle code execution)."""

from __future__ import annotations

from pathlib import Path

import torch

from vlbench.errors import UserError


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
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

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's fault
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
