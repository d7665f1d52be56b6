"""tiny_llama's `vocabulary = "train_captions"`: BERT's WordPiece cut down to the pieces of the
train captions (plugins/language_models/_fitted_vocab.py), checked against the full tokenizer."""

from __future__ import annotations

import pytest

from vlbench.errors import SuiteError, UserError
from vlbench.plugins.language_models._fitted_vocab import SPECIALS, fitted_wordpiece
from vlbench.plugins.text._tokenize import wordpiece_tokenizer
from vlbench.suite import load_suite

TRAIN = ["three small red circles among clutter", "Two LARGE blue squares.", "a tiny triangle, left of a star"]


def test_train_captions_keep_their_pieces_and_round_trip():
    fitted, full = fitted_wordpiece(TRAIN), wordpiece_tokenizer()
    used = {p for c in TRAIN for p in full.tokenize(c)}
    assert len(fitted) == len(SPECIALS) + len(used)
    for caption in TRAIN:
        assert fitted.tokenize(caption) == full.tokenize(caption)
        ids = fitted(caption, add_special_tokens=False)["input_ids"]
        assert fitted.decode(ids) == full.decode(full(caption, add_special_tokens=False)["input_ids"])
    assert fitted("zebra", add_special_tokens=False)["input_ids"] == [fitted.unk_token_id]  # never in training


def test_tiny_llama_takes_the_train_captions_of_the_task(host):
    spec = host.get("language_model", "tiny_llama")
    lm = spec.factory(
        pretrained=False,
        cache_dir=None,
        train_captions=TRAIN,
        vocabulary="train_captions",
        layers=1,
        width=32,
        heads=2,
        context_length=32,
        seed=0,
    )
    assert lm.vocab_size == len(fitted_wordpiece(TRAIN)) < 100
    assert "cut down to the" in lm.weights_provenance["weights"]
    ids, mask = lm.encode(["two tiny squares"], max_length=8)
    assert lm.decode(ids) == ["two tiny squares"] and mask.sum() == 5  # BOS + 3 words + EOS
    with pytest.raises(UserError, match="needs a task that hands the train captions"):
        spec.factory(pretrained=False, cache_dir=None, train_captions=(), vocabulary="train_captions")


def test_an_unknown_vocabulary_is_refused_when_the_suite_loads(tmp_path, host):
    suite = tmp_path / "v.toml"
    suite.write_text("""
[suite]
name = "v"
[[tasks]]
name = "captioning"
[[vision]]
name = "timm:resnet10t"
[[fusions]]
name = "prefix_lm"
[[language_models]]
name = "tiny_llama"
options = { vocabulary = "words" }
""")
    with pytest.raises(SuiteError, match=r"language_models\[0\]\.options.*vocabulary must be one of 'bert', 'train_captions'"):
        load_suite(suite, host)
