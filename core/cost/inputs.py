"""What every cost measurement shares: the run's input shapes, synthetic images and full-length
captions, the objective whose forward is measured, inference mode with the run's precision,
and halving the batch on out-of-memory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

from vlbench import objectives
from vlbench.data import Precision
from vlbench.objectives import ObjectiveSpec, VLModel
from vlbench.types.encoders import EncoderOutput, TokenizedText

T = TypeVar("T")


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def input_shape(model: VLModel, image_size: Sequence[int] | None, text_length: int | None) -> tuple[tuple[int, int], int | None]:
    """(H, W) and caption length; each defaults to what the encoders are built for (no text tower: None)."""
    size = tuple(image_size) if image_size is not None else tuple(model.vision.info.input_size)
    if model.text is None:
        return size, None  # type: ignore[return-value]
    return size, text_length or model.text.info.max_length  # type: ignore[return-value]


def synthetic_images(batch: int, size: Sequence[int], device: torch.device, channels_last: bool = False) -> torch.Tensor:
    images = torch.randn(batch, 3, *size, device=device)
    return images.contiguous(memory_format=torch.channels_last) if channels_last else images


def synthetic_text(model: VLModel, batch: int, length: int, device: torch.device) -> TokenizedText:
    """Captions that fill all ``length`` positions with real tokens: the most work the tower does."""
    max_length = model.text.info.max_length
    if length > max_length:
        raise ValueError(f"text_length {length} exceeds the text encoder's max_length {max_length}")
    tokens = model.tokenize([" ".join(["person"] * max_length)] * batch)
    return TokenizedText(tokens.input_ids[:, :length], tokens.attention_mask[:, :length]).to(device)


def measured_objective(model: VLModel, objective: ObjectiveSpec | str | None) -> ObjectiveSpec | None:
    """The objective whose forward is measured; None: a model without a fusion (encoders only)."""
    return objectives.resolve(objective, model.fusion)


def objective_name(objective: ObjectiveSpec | None) -> str:
    return "encoders only" if objective is None else objective.name


def fuse(model: VLModel, objective: ObjectiveSpec | None, image: EncoderOutput, text: EncoderOutput | None) -> Any:
    """The fusion's share of the objective's forward, on encoder outputs (none without a fusion)."""
    return None if objective is None else objective.fuse(model, image, text)


def inference_forward(model: VLModel, objective: ObjectiveSpec | None, images: torch.Tensor, text: TokenizedText | None) -> Any:
    """The objective's whole inference forward: the encoders and the fusion."""
    return fuse(model, objective, model.vision(images), None if text is None else model.text(text))


@contextlib.contextmanager
def inference(precision: Precision) -> Iterator[None]:
    """Inference mode with the run's autocast: how every timed and memory-measured forward runs."""
    with torch.inference_mode(), precision.autocast():
        yield


def with_backoff(batch: int, device: torch.device, attempt: Callable[[int], T]) -> tuple[int | None, T | None, list[int]]:
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
