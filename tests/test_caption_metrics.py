"""Caption metrics: the pure-Python PTB tokenizer's rules, BLEU/CIDEr-D equal to
pycocoevalcap's scorers called directly and BLEU-4 equal to sacrebleu's corpus BLEU on
random corpora, and the two baselines."""

from __future__ import annotations

import random

import numpy as np
import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from sacrebleu.metrics import BLEU

from vlbench.plugins.tasks._caption_metrics import (
    caption_scores,
    most_frequent_caption,
    nearest_train_caption,
    ptb_tokenize,
)

WORDS = ["a", "the", "red", "blue", "green", "circle", "square", "two", "one", "big", "small", "of", "in", "with"]


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("A man riding a horse.", "a man riding a horse"),
        ("Two dogs, one cat; and a bird!", "two dogs one cat and a bird"),
        ("Is it raining?", "is it raining"),
        ("I don't know, it's fine.", "i do n't know it 's fine"),
        ("We can't, won't, cannot go", "we ca n't wo n't can not go"),
        ("the man's hat and the dogs' bowls", "the man 's hat and the dogs bowls"),
        ("a half-covered kite - flying -- high", "a half-covered kite flying high"),
        ("It costs 3.5 dollars for 1,000 at 10:30.", "it costs 3.5 dollars for 1,000 at 10:30"),
        ('He said "hello" (quietly) [twice] {ok}', "he said hello quietly twice ok"),
        ("'quoted' and ``latex''", "quoted and latex"),
        ("Wait...what... ok", "wait what ok"),
        ("Mr. Smith of the U.S. team.", "mr. smith of the u.s. team"),
        ("  MIXED   Case\tand\nlines ", "mixed case and lines"),
        ("", ""),
        ("...", ""),
    ],
)
def test_ptb_tokenize_rules(text: str, tokens: str) -> None:
    assert ptb_tokenize(text) == tokens


def random_corpus(rng: random.Random, n_images: int) -> tuple[dict[int, str], dict[int, list[str]]]:
    """Captions over a small vocabulary; each candidate copies a prefix of one reference
    and adds noise, so n-grams of every order match somewhere in the corpus."""

    def sentence() -> str:
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 12)))

    refs = {i: [sentence() for _ in range(rng.randint(1, 5))] for i in range(n_images)}
    cands = {}
    for i in range(n_images):
        words = rng.choice(refs[i]).split()
        noise = [rng.choice(WORDS) for _ in range(rng.randint(0, 4))]
        cands[i] = " ".join(words[: rng.randint(1, len(words))] + noise)
    return cands, refs


CORPORA = [random_corpus(random.Random(seed), random.Random(1000 + seed).randint(2, 30)) for seed in range(120)]


def test_scores_equal_pycocoevalcap_called_directly() -> None:
    for cands, refs in CORPORA:
        scores = caption_scores(cands, refs)
        res = {i: [c] for i, c in cands.items()}
        bleu, bleu_per_image = Bleu(4).compute_score(refs, res, verbose=0)
        cider, cider_per_image = Cider().compute_score(refs, res)
        for n in range(4):
            assert scores.corpus[f"BLEU-{n + 1}"] == pytest.approx(100 * bleu[n], abs=1e-9)
        assert scores.corpus["CIDEr-D"] == pytest.approx(100 * cider, abs=1e-9)
        assert list(scores.per_image["BLEU-4"].values()) == pytest.approx([100 * v for v in bleu_per_image[3]], abs=1e-9)
        assert list(scores.per_image["CIDEr-D"].values()) == pytest.approx([100 * v for v in cider_per_image], abs=1e-9)
        # The corpus CIDEr-D is the mean of the per-image scores (what an image bootstrap resamples).
        assert np.mean(list(scores.per_image["CIDEr-D"].values())) == pytest.approx(scores.corpus["CIDEr-D"], abs=1e-9)


def sacrebleu_bleu4(cands: dict[int, str], refs: dict[int, list[str]]) -> tuple[float, list[int]]:
    """sacrebleu's corpus BLEU with the settings that match coco-caption's: whitespace
    tokens as given (tokenize none, case kept), no smoothing, no effective order, closest
    reference length (sacrebleu's only choice; ties to the shorter, as coco-caption).
    A varying number of references is given as None-padded reference streams."""
    ids = list(cands)
    streams = [[refs[i][k] if k < len(refs[i]) else None for i in ids] for k in range(max(map(len, refs.values())))]
    result = BLEU(tokenize="none", smooth_method="none", effective_order=False, lowercase=False, force=True).corpus_score(
        [cands[i] for i in ids], streams
    )
    return result.score, result.counts


def test_bleu4_equals_sacrebleu() -> None:
    compared = 0
    for cands, refs in CORPORA:
        sacre, counts = sacrebleu_bleu4(cands, refs)
        ours = caption_scores(cands, refs).corpus["BLEU-4"]
        if min(counts) == 0:
            # No n-gram match of some order: sacrebleu says 0; coco-caption's 1e-15 floor
            # in the numerator leaves a small positive BLEU (documented in docs/metrics.md).
            assert sacre == 0.0 and 0.0 < ours < 100 * 0.2
            continue
        assert ours / 100 == pytest.approx(sacre / 100, abs=1e-9)
        compared += 1
    assert compared >= 100


def test_single_image_and_input_checks() -> None:
    one = caption_scores({"a": "a red circle"}, {"a": ["a red circle"]})
    # 3 words, no 4-gram: coco-caption's (0 + 1e-15) / (0 + 1e-9) factor gives 100 * 1e-6 ** (1/4),
    # not 0 (sacrebleu's answer); documented in docs/metrics.md.
    assert one.corpus["BLEU-4"] == pytest.approx(100 * 1e-6**0.25)
    assert one.corpus["BLEU-3"] == pytest.approx(100.0)
    assert one.corpus["CIDEr-D"] == 0.0  # IDF = log(1 image) = 0
    two = caption_scores({"a": "a red circle", "b": "two blue squares"}, {"a": ["a red circle"], "b": ["two blue squares"]})
    assert two.corpus["CIDEr-D"] > 0
    with pytest.raises(ValueError, match="same images"):
        caption_scores({"a": "x"}, {"b": ["x"]})
    with pytest.raises(ValueError, match="non-empty list"):
        caption_scores({"a": "x"}, {"a": []})
    with pytest.raises(ValueError, match="non-empty list"):
        caption_scores({"a": "x"}, {"a": "x"})
    with pytest.raises(ValueError, match="at least one"):
        caption_scores({}, {})


def test_tokenization_is_applied_to_both_sides() -> None:
    raw = caption_scores({1: "A red circle.", 2: "Two Squares!"}, {1: ["a red circle"], 2: ["two squares"]})
    clean = caption_scores({1: "a red circle", 2: "two squares"}, {1: ["a red circle"], 2: ["two squares"]})
    assert raw.corpus == clean.corpus


def test_most_frequent_caption_baseline() -> None:
    train = [["A red circle.", "two squares"], ["a red circle"], ["two squares"], ["a blue ring"]]
    out = most_frequent_caption(train, ["x", "y"])
    assert out == {"x": "a red circle", "y": "a red circle"}  # tie at 2 -> alphabetically first
    with pytest.raises(ValueError, match="at least one train caption"):
        most_frequent_caption([[]], ["x"])


def test_nearest_train_caption_baseline() -> None:
    train_emb = np.array([[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]])
    train_caps = [["east one", "east two"], ["north"], ["north east", "a b c"]]
    query = np.array([[2.0, 0.1], [0.1, 3.0]])
    assert nearest_train_caption(query, train_emb, train_caps, ["q1", "q2"]) == {"q1": "east one", "q2": "north"}
    # k = 2: consensus among the captions of the two nearest images (mean unigram F1).
    # "east one", "east two" and "north east" tie at mean F1 1/3: the first (nearest) wins.
    assert nearest_train_caption(query[:1], train_emb, train_caps, ["q1"], k=2) == {"q1": "east one"}
    assert nearest_train_caption(query[:1], train_emb, [["x"], ["y"], ["b c", "a b", "a b d"]], ["q1"], k=2) == {"q1": "a b"}
    brute = nearest_train_caption(query[:1], train_emb, [["a x"], ["b"], ["a y"]], ["q"], k=3)
    assert brute == {"q": "a x"}  # "a x" and "a y" agree on "a"; the nearer one wins the tie
    with pytest.raises(ValueError, match="k must be"):
        nearest_train_caption(query, train_emb, train_caps, ["q1", "q2"], k=4)
    with pytest.raises(ValueError, match="2-d"):
        nearest_train_caption(np.zeros(2), train_emb, train_caps, ["q1"])
