"""The generation objective: text generated from visual tokens (captioning).

======================================================= =========================================
a fusion implements                                     a task may call on VLModel
======================================================= =========================================
``vocab``: its own tokenizer (``encode(texts,            ``caption_vocab``, ``caption_max_length``
max_length) -> ids [B, T]``, ``decode(ids)``, ``pad_id``
``bos_id``, ``eos_id``, ``len()``); ``max_length``
``prefill(image: EncoderOutput) -> state``: a tuple of   ``prefill(images) -> state``
tensors (or None) with the batch first
``caption_logits(state, input_ids [B, T]) ->             ``caption_logits(images, input_ids)``
logits [B, T, V]`` (teacher forcing, causal)
``decode_step(state, input_ids [B, t]) ->                ``decode_step(state, input_ids)``
log-probs [B, V]`` of the next token
======================================================= =========================================

Both designs of the studies fit: a decoder that cross-attends to the visual tokens (state =
projected, pruned memory and its mask) and a causal language model that takes the visual
tokens as a prefix (state = the prefix embeddings). Beam search expands the state with
``repeat_interleave`` along dim 0. The factory receives the TRAIN captions as ``captions``
(``Task.fusion_inputs``) to fit its vocabulary; training targets (``Batch.targets``) are that
vocabulary's ids, BOS first, EOS last, PAD after, never the text encoder's tokens.

Cost: the fusion's share of a forward is the prefill and one decode step from BOS; the extra
figures (:func:`extra_cost`) are the MACs of one decode step, prefill latency, per-token
decode latency and tokens/s at batch 1 and at the suite's largest batch, decoding's peak
memory, and the largest training batch that fits on the device, found by halving. A fusion
may declare its own timed stages, ``cost_stages(model, images) -> {name: CostStage}``
(a prefix LM: encoder, projection, LM prefill, one cached decode step), stored under ``stages``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from vlbench.objectives.base import ObjectiveSpec
from vlbench.objectives.model import VLModel
from vlbench.types.encoders import EncoderOutput, TokenizedText

LARGEST_BATCH_START = 1024  # halved until a training step fits (CUDA only)
CONTRACT_CAPTIONS = ("a red square on the left", "two blue circles at the top", "a green triangle")


def _bos(model_or_fusion: Any, batch: int, device: torch.device) -> torch.Tensor:
    return torch.full((batch, 1), model_or_fusion.vocab.bos_id, dtype=torch.long, device=device)


def fuse(model: VLModel, image: EncoderOutput, text: EncoderOutput | None) -> Any:
    state = model.fusion.prefill(image)
    return model.fusion.decode_step(state, _bos(model.fusion, image.tokens.shape[0], image.tokens.device))


def teacher_forced_loss(logits: torch.Tensor, targets: torch.Tensor, pad_id: int) -> torch.Tensor:
    """Cross-entropy of logits[:, t] against targets[:, t + 1], PAD positions masked out."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), targets[:, 1:].flatten(), ignore_index=pad_id)


def _random_targets(model: VLModel, batch: int, device: torch.device) -> torch.Tensor:
    vocab, length = model.caption_vocab, model.fusion.max_length
    ids = torch.randint(len(vocab), (batch, length), device=device)
    ids[:, 0], ids[:, -1] = vocab.bos_id, vocab.eos_id
    return ids


def synthetic_loss(model: VLModel, images: torch.Tensor, text: TokenizedText | None) -> torch.Tensor:
    targets = _random_targets(model, images.shape[0], images.device)
    return teacher_forced_loss(model.caption_logits(images, targets), targets, model.caption_vocab.pad_id)


def targets(model: VLModel) -> Callable[[Sequence[str]], torch.Tensor]:
    return lambda texts: model.caption_vocab.encode(list(texts), model.fusion.max_length)


def check_fusion(fusion: Any, image: EncoderOutput, words: EncoderOutput | None, num_classes: int, name: str) -> None:
    """Vocabulary ids, teacher-forced logits, normalised next-token log-probs, causality, gradients."""
    vocab, batch = fusion.vocab, image.pooled.shape[0]
    assert len({vocab.pad_id, vocab.bos_id, vocab.eos_id}) == 3, f"{name}: PAD, BOS and EOS must be distinct ids"
    ids = vocab.encode(list(CONTRACT_CAPTIONS[:1]) * batch, fusion.max_length)
    assert ids.dtype == torch.long and ids.shape == (batch, fusion.max_length), f"{name}: vocab.encode gave {tuple(ids.shape)}"
    assert (ids[:, 0] == vocab.bos_id).all(), f"{name}: encoded captions must start with BOS"
    state = fusion.prefill(image)
    assert isinstance(state, tuple), f"{name}: prefill must return a tuple (batch first), got {type(state).__name__}"
    logits = fusion.caption_logits(state, ids)
    assert tuple(logits.shape) == (batch, fusion.max_length, len(vocab)), f"{name}: caption logits {tuple(logits.shape)}"
    assert torch.isfinite(logits).all(), f"{name}: non-finite caption logits"
    fusion.eval()
    with torch.no_grad():
        full = fusion.caption_logits(fusion.prefill(image), ids)
        changed = ids.clone()
        changed[:, -1] = vocab.eos_id if ids[0, -1] != vocab.eos_id else vocab.bos_id
        later = fusion.caption_logits(fusion.prefill(image), changed)
        logp = fusion.decode_step(fusion.prefill(image), ids[:, :2])
    fusion.train()
    assert torch.allclose(full[:, :-1], later[:, :-1], atol=1e-4), f"{name}: a later token changes earlier logits (not causal)"
    assert tuple(logp.shape) == (batch, len(vocab)), f"{name}: decode_step gave {tuple(logp.shape)}"
    assert torch.allclose(logp.exp().sum(-1), torch.ones(batch), atol=1e-3), f"{name}: decode_step must return log-probabilities"
    teacher_forced_loss(logits, ids, vocab.pad_id).backward()


def _forced_decode(model: VLModel, state: tuple, batch: int, steps: int, device: torch.device) -> torch.Tensor:
    """``steps`` greedy steps that never stop at EOS: the fixed work of a full-length caption."""
    ids = _bos(model.fusion, batch, device)
    for _ in range(steps):
        ids = torch.cat([ids, model.decode_step(state, ids).argmax(-1, keepdim=True)], dim=1)
    return ids


def extra_cost(
    model: VLModel,
    precision: Any,
    image_size: Sequence[int],
    batch_sizes: Sequence[int],
    budget_s: float,
    *,
    loss_fn: Any = None,
    train_batch: Any = None,
    **timing: Any,
) -> dict[str, Any]:
    """Generation's own figures: decode-step MACs, prefill/decode latency, tokens/s, memory, largest batch."""
    from vlbench import cost

    device = precision.device
    steps = model.fusion.max_length - 1
    out: dict[str, Any] = {
        "unit_time": "ms",
        "unit_macs": "MACs",
        "protocol": cost.TIMING_PROTOCOL,
        "decode_steps": steps,
        "note": "decoding runs max_length - 1 steps without stopping at EOS",
    }
    images = cost.synthetic_images(1, tuple(image_size), device)
    with torch.inference_mode():
        image_out = model.vision(images)
        counted, state = cost.count_component("fusion", model.fusion, model.fusion.prefill, image_out, depth=1)
        out["prefill_macs"] = counted["macs"]
        first, _ = cost.count_component(
            "fusion", model.fusion, model.fusion.decode_step, state, _bos(model.fusion, 1, device), depth=1
        )
        ids = _forced_decode(model, state, 1, steps, device)
        last, _ = cost.count_component("fusion", model.fusion, model.fusion.decode_step, state, ids[:, :-1], depth=1)
    out["decode_step_macs"] = {
        "first": first["macs"],
        "last": last["macs"],
        "batch": 1,
        "of": "one decode_step at batch 1: from BOS alone (first) and with the longest prefix (last)",
    }
    memory = getattr(model.fusion, "memory_tokens", None)
    if memory is not None:
        out["memory_tokens"] = memory
    stages = getattr(model.fusion, "cost_stages", None)  # optional: the fusion's own breakdown of the path
    if stages is not None:
        with torch.inference_mode():
            declared = stages(model, cost.synthetic_images(1, tuple(image_size), device, precision.channels_last))
        out["stages"] = {"batch": 1, "protocol": cost.TIMING_PROTOCOL, **cost.run_stages(declared, precision, budget_s, **timing)}
    out["batches"] = []
    for batch in sorted({1, max(batch_sizes)}):
        pics = cost.synthetic_images(batch, tuple(image_size), device, precision.channels_last)
        with cost.inference(precision):
            prefill = cost.time_stage(functools.partial(model.prefill, pics), budget_s, device=device, **timing)
            state = model.prefill(pics)
            decode = cost.time_stage(
                functools.partial(_forced_decode, model, state, batch, steps, device),
                budget_s,
                device=device,
                **timing,
            )
        out["batches"].append(
            {
                "batch": batch,
                "prefill": prefill,
                "decode": decode,
                "per_token_ms_p50": decode["p50_ms"] / steps,
                "tokens_per_s": batch * steps * 1e3 / decode["mean_ms"],
            }
        )

    def decode_all() -> None:
        with cost.inference(precision):
            _forced_decode(model, model.prefill(pics), len(pics), steps, device)

    out["decode_memory"] = {**cost.peak_memory(decode_all, device, (model,)), "batch": len(pics)}
    out["largest_train_batch"] = _largest_train_batch(model, precision, image_size)
    return out


def _largest_train_batch(model: VLModel, precision: Any, image_size: Sequence[int]) -> dict[str, Any]:
    from vlbench import cost

    device = precision.device
    if device.type != "cuda":
        return {"measured": False, "reason": "only on CUDA: a CPU run swaps instead of running out of memory"}

    result = cost.train_step_memory(model, precision, LARGEST_BATCH_START, objective=GENERATION, image_size=image_size)
    if not result.get("measured"):
        return result
    return {
        "measured": True,
        "batch": result["batch"],
        "oom_batches": result["oom_batches"],
        "start": LARGEST_BATCH_START,
        "peak_bytes": result["peak_bytes"],
        "of": "two AdamW steps of the synthetic generation loss on full-length captions, halving from the start on out-of-memory",
    }


GENERATION = ObjectiveSpec(
    name="generation",
    description="captions decoded token by token from visual tokens, with the fusion's own vocabulary",
    fusion_methods={
        "prefill": "(image: EncoderOutput) -> state tuple",
        "caption_logits": "(state, ids [B,T]) -> [B,T,V]",
        "decode_step": "(state, ids [B,t]) -> log-probs [B,V]",
    },
    model_methods={
        "caption_vocab": "the fusion's tokenizer",
        "caption_max_length": "positions per caption",
        "prefill": "images -> state",
        "caption_logits": "(images, ids) -> logits",
        "decode_step": "(state, ids) -> log-probs",
    },
    fuse=fuse,
    synthetic_loss=synthetic_loss,
    check_fusion=check_fusion,
    targets=targets,
    extra_cost=extra_cost,
    contract_inputs={"captions": list(CONTRACT_CAPTIONS)},
    mock_task="mock_captioning",
)
