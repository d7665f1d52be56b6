"""The conformance contract of the ``language_model`` kind: what a prefix-LM fusion relies on.

:func:`check_language_model` builds a registered language model and checks, raising
AssertionError with the reason: it is frozen by default; its tokenizer round-trips text with
explicit BOS/EOS/PAD ids (PAD distinct from both, right padding, truncation keeping BOS and
EOS); a forward on ``inputs_embeds`` respects the attention mask (a row's real positions do
not see its PAD tail, a masked position is invisible to later ones) and conditions on a prefix; generation after a prefix through the KV
cache gives the argmax of a full forward recomputed at every step. The kind's ``check`` is
this function, so ``vlbench check-plugin`` and the kit's ``ComponentKindContract`` run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vlbench.plugins.language_models._causal_lm import CausalLM
from vlbench.types import ComponentSpec

ROUND_TRIP = ["a red car on the left", "two dogs"]


def check_language_model(spec: ComponentSpec, cache_dir: Path, pretrained: bool | None = None, **options: Any) -> None:
    """Build ``spec`` (its pretrained default unless given) and check the contract above."""
    pretrained = getattr(spec, "pretrained_by_default", False) if pretrained is None else pretrained
    lm = spec.factory(pretrained=pretrained, cache_dir=Path(cache_dir), **{**spec.options, **options})
    name = spec.name
    assert isinstance(lm, CausalLM), (
        f"{name}: the factory must return a CausalLM (vlbench.plugins.language_models), got {type(lm).__name__}"
    )
    check_frozen_by_default(lm, name)
    check_round_trip(lm, name)
    with torch.no_grad():
        check_forward_on_embeddings(lm, name)
        check_generation_with_prefix(lm, name)


def check_frozen_by_default(lm: CausalLM, name: str) -> None:
    assert not any(p.requires_grad for p in lm.parameters()), (
        f"{name}: built with trainable weights; a language model is frozen by default"
    )
    assert not lm.model.training, f"{name}: a frozen language model must be in eval mode"
    assert lm.context_length >= 8 and lm.embed_dim >= 1 and lm.vocab_size >= len(lm.vocab), f"{name}: implausible sizes"


def check_round_trip(lm: CausalLM, name: str) -> None:
    special = lm.special
    assert len({special.bos, special.eos, special.pad}) == 3, f"{name}: BOS, EOS and PAD must be distinct ids, got {special}"
    ids, mask = lm.encode(ROUND_TRIP, max_length=12)
    assert ids.dtype == torch.long and ids.shape == (2, 12) and mask.dtype == torch.bool, (
        f"{name}: encode gave {tuple(ids.shape)}"
    )
    assert (ids[:, 0] == special.bos).all(), f"{name}: encoded captions must start with BOS"
    short = int(mask[1].sum())
    assert ids[1, short - 1] == special.eos and (ids[1, ~mask[1]] == special.pad).all(), (
        f"{name}: expected BOS w.. EOS PAD.. (right padding)"
    )
    assert [t.lower() for t in lm.decode(ids)] == ROUND_TRIP, f"{name}: decode(encode(x)) gave {lm.decode(ids)}, not {ROUND_TRIP}"
    cut, _ = lm.encode(["one two three four five six seven"], max_length=4)
    assert cut[0, 0] == special.bos and cut[0, -1] == special.eos, f"{name}: truncation must keep BOS first and EOS last"


def check_forward_on_embeddings(lm: CausalLM, name: str) -> None:
    ids, mask = lm.encode(ROUND_TRIP[::-1], max_length=12)  # the short caption first, padded
    prefix = torch.randn(2, 3, lm.embed_dim, generator=torch.Generator().manual_seed(0))
    embeds = torch.cat([prefix, lm.embed(ids)], dim=1)
    full_mask = torch.cat([torch.ones(2, 3, dtype=torch.bool), mask], dim=1)
    logits = lm(embeds, full_mask).logits
    assert tuple(logits.shape) == (2, 15, lm.vocab_size), (
        f"{name}: logits {tuple(logits.shape)}, expected (2, 15, {lm.vocab_size})"
    )
    assert torch.isfinite(logits).all(), f"{name}: non-finite logits"
    n = 3 + int(mask[0].sum())
    alone = lm(embeds[:1, :n], full_mask[:1, :n]).logits
    assert torch.allclose(logits[0, :n], alone[0], atol=1e-3, rtol=1e-3), (
        f"{name}: padded positions change the real positions' logits"
    )
    # A masked position is invisible to the later ones, whatever it holds (causality alone does not show this).
    holed = full_mask.clone()
    holed[:, 1] = False
    changed = embeds.clone()
    changed[:, 1] += 3 * torch.randn(2, lm.embed_dim, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(lm(embeds, holed).logits[:, 2:], lm(changed, holed).logits[:, 2:], atol=1e-3, rtol=1e-3), (
        f"{name}: the attention mask is ignored (a masked position changes the later logits)"
    )
    other = lm(torch.cat([prefix.flip(0), lm.embed(ids)], dim=1), full_mask).logits
    assert not torch.allclose(logits, other), f"{name}: the logits ignore the input embeddings of the prefix"


def check_generation_with_prefix(lm: CausalLM, name: str, steps: int = 5) -> None:
    prefix = (
        torch.randn(2, 4, lm.embed_dim, generator=torch.Generator().manual_seed(1))
        * lm.embed(torch.tensor([lm.special.bos])).std()
    )
    step = lm.prefix_step(prefix)
    ids = torch.full((2, 1), lm.special.bos)
    for _ in range(steps):
        logp = step(ids)
        assert tuple(logp.shape) == (2, lm.vocab_size), f"{name}: a decode step gave {tuple(logp.shape)}"
        assert torch.allclose(logp.exp().sum(-1), torch.ones(2), atol=1e-3), (
            f"{name}: a decode step must return log-probabilities"
        )
        ids = torch.cat([ids, logp.argmax(-1, keepdim=True)], dim=1)
    embeds = torch.cat([prefix, lm.embed(ids[:, :-1])], dim=1)
    recomputed = lm(embeds, torch.ones(embeds.shape[:2], dtype=torch.bool)).logits[:, prefix.shape[1] :].argmax(-1)
    assert torch.equal(recomputed, ids[:, 1:]), f"{name}: cached generation differs from the full forward's argmax"
    reordered = step(ids[[1, 0], :3])  # not an extension of the last call (a beam reorder): recomputed
    assert torch.allclose(reordered, lm.prefix_step(prefix)(ids[[1, 0], :3]), atol=1e-4), (
        f"{name}: a step depends on the call history"
    )
