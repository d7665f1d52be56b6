"""Greedy and beam-search decoding over a step function, for any generation fusion.

``step(input_ids [B', t]) -> log-probs [B', V]`` gives the next-token distribution of
every row; the fusion closes it over its memory (for a beam, the memory expanded with
``repeat_interleave(beam_size, dim=0)``, row ``b * beam_size + j`` being beam j of item b).
The same functions serve the cross-attention decoder of study 002 and a prefix language
model (study 004).

Lengths: ``max_length`` counts every position of the returned sequence, BOS and EOS
included (the decoder's position table has ``max_length`` rows), so at most
``max_length - 1`` tokens are generated. Returned rows start with BOS; after a row's EOS
come ``pad_id``s. A row that reaches ``max_length`` without EOS simply ends there.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Step = Callable[[torch.Tensor], torch.Tensor]


def _check(batch: int, max_length: int, beam_size: int = 1) -> None:
    for name, value, minimum in (("batch", batch, 1), ("max_length", max_length, 2), ("beam_size", beam_size, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


@torch.no_grad()
def greedy(
    step: Step, batch: int, bos_id: int, eos_id: int, max_length: int, pad_id: int = 0, device: torch.device | str | None = None
) -> torch.Tensor:
    """LongTensor [batch, L <= max_length]: the most likely token at every step."""
    _check(batch, max_length)
    ids = torch.full((batch, 1), bos_id, dtype=torch.long, device=device)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    while ids.shape[1] < max_length and not done.all():
        token = step(ids).argmax(dim=-1)
        token = torch.where(done, torch.full_like(token, pad_id), token)
        ids = torch.cat([ids, token.unsqueeze(1)], dim=1)
        done |= token == eos_id
    return ids


@torch.no_grad()
def beam_search(
    step: Step,
    batch: int,
    bos_id: int,
    eos_id: int,
    max_length: int,
    beam_size: int,
    length_penalty: float = 1.0,
    pad_id: int = 0,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """LongTensor [batch, L <= max_length]: per item, the best of ``beam_size`` beams.

    Beams are ranked during the search by their summed log-probability; a beam that has
    emitted EOS stays in the beam with its score frozen (it can only be extended by PAD
    at no cost), so finished and open hypotheses compete for the same slots. The final
    choice maximises ``score / generated_tokens ** length_penalty`` (EOS counted; 0 =
    raw log-probability, 1 = per-token average). With ``beam_size = 1`` this is greedy.
    """
    _check(batch, max_length, beam_size)
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) or length_penalty < 0:
        raise ValueError(f"length_penalty must be a number >= 0, got {length_penalty!r}")
    rows = batch * beam_size
    ids = torch.full((rows, 1), bos_id, dtype=torch.long, device=device)
    # Only beam 0 is live at first, so the first expansion does not pick the same token k times.
    scores = torch.full((batch, beam_size), float("-inf"), device=device)
    scores[:, 0] = 0.0
    done = torch.zeros(batch, beam_size, dtype=torch.bool, device=device)
    lengths = torch.zeros(batch, beam_size, device=device)  # generated tokens, EOS included
    while ids.shape[1] < max_length and not done.all():
        logp = step(ids).float()
        vocab = logp.shape[-1]
        logp = logp.view(batch, beam_size, vocab)
        # A finished beam has exactly one continuation: PAD at log-probability 0.
        frozen = torch.full_like(logp, float("-inf"))
        frozen[..., pad_id] = 0.0
        logp = torch.where(done.unsqueeze(-1), frozen, logp)
        total = (scores.unsqueeze(-1) + logp).view(batch, beam_size * vocab)
        scores, flat = total.topk(beam_size, dim=1)
        source, token = flat // vocab, flat % vocab
        rows_from = (source + torch.arange(batch, device=device).unsqueeze(1) * beam_size).view(-1)
        ids = torch.cat([ids[rows_from], token.view(-1, 1)], dim=1)
        was_done = done.gather(1, source)
        lengths = lengths.gather(1, source) + (~was_done).float()
        done = was_done | (token == eos_id)
    normalised = scores / lengths.clamp(min=1).pow(length_penalty)
    best = normalised.argmax(dim=1)
    return ids.view(batch, beam_size, -1)[torch.arange(batch, device=device), best]
