"""The captioning fusion's parts, engine-free: the word vocabulary, token pruning, the
transformer caption decoder and greedy / beam decoding (against brute force)."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from vlbench.plugins.fusion._caption_decoder import CaptionDecoder, teacher_forced_loss, token_accuracy
from vlbench.plugins.fusion._caption_vocab import WordVocabulary
from vlbench.plugins.fusion._decoding import beam_search, greedy
from vlbench.plugins.fusion._pruning import kept_count, prune_tokens

# ---------------------------------------------------------------- vocabulary

TRAIN = ["A red circle.", "Two red squares!", "a blue circle", "the red one"]


def test_vocabulary_ids_are_deterministic_and_frequency_ordered() -> None:
    vocab = WordVocabulary.fit(TRAIN)
    assert vocab.words[:4] == ("<pad>", "<bos>", "<eos>", "<unk>")
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2, 3)
    # red x3, a x2, circle x2, then the singletons alphabetically.
    assert vocab.words[4:] == ("red", "a", "circle", "blue", "one", "squares", "the", "two")
    assert WordVocabulary.fit(list(reversed(TRAIN))).words == vocab.words
    assert len(vocab) == 12
    assert WordVocabulary.fit(TRAIN, min_count=2).words[4:] == ("red", "a", "circle")
    assert WordVocabulary.fit(TRAIN, max_size=6).words[4:] == ("red", "a")


def test_encode_decode_round_trip_and_truncation() -> None:
    vocab = WordVocabulary.fit(TRAIN)
    ids = vocab.encode(["A red circle.", "two green squares", "red red red red red"], max_length=6)
    red, a, circle, two, squares = (vocab.words.index(w) for w in ("red", "a", "circle", "two", "squares"))
    assert ids.tolist() == [
        [1, a, red, circle, 2, 0],
        [1, two, 3, squares, 2, 0],  # "green" is not in the train captions -> UNK
        [1, red, red, red, red, 2],  # truncated: BOS kept, EOS last
    ]
    assert ids.dtype == torch.long
    assert vocab.decode(ids) == ["a red circle", "two <unk> squares", "red red red red"]
    assert vocab.decode([[1, a, 2, red, red], [a, 0, circle]]) == ["a", "a circle"]  # stops at EOS; drops BOS/PAD
    with pytest.raises(ValueError, match="max_length"):
        vocab.encode(["a"], max_length=1)


def test_vocabulary_state_is_json_and_round_trips() -> None:
    vocab = WordVocabulary.fit(TRAIN)
    again = WordVocabulary.from_state(json.loads(json.dumps(vocab.state_dict())))
    assert again.words == vocab.words
    assert torch.equal(again.encode(TRAIN, 8), vocab.encode(TRAIN, 8))


def test_vocabulary_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="no words"):
        WordVocabulary.fit(["", "..."])
    with pytest.raises(ValueError, match="min_count"):
        WordVocabulary.fit(TRAIN, min_count=0)
    with pytest.raises(ValueError, match="max_size"):
        WordVocabulary.fit(TRAIN, max_size=4)
    with pytest.raises(ValueError, match="specials"):
        WordVocabulary(["a", "b", "c", "d"])


# ---------------------------------------------------------------- pruning


def test_kept_count_rounds_half_up_and_keeps_one() -> None:
    assert [kept_count(r, 10) for r in (1.0, 0.7, 0.5, 0.3, 0.25, 0.01)] == [10, 7, 5, 3, 3, 1]
    assert kept_count(0.5, 7) == 4  # 3.5 rounds up, not to even


def test_l2_pruning_keeps_the_largest_norms_in_order() -> None:
    tokens = torch.zeros(2, 5, 3)
    norms = torch.tensor([[1.0, 5.0, 2.0, 4.0, 3.0], [9.0, 1.0, 2.0, 3.0, 8.0]])
    tokens[..., 0] = norms
    kept, kept_mask, k = prune_tokens(tokens, 0.6, "l2", num_prefix_tokens=0)
    assert k == 3 and kept_mask is None
    assert kept[..., 0].tolist() == [[5.0, 4.0, 3.0], [9.0, 3.0, 8.0]]  # original order kept


def test_prefix_tokens_are_never_kept_and_cls_attention_uses_the_class_token() -> None:
    torch.manual_seed(0)
    spatial = torch.randn(1, 6, 4)
    cls = spatial[:, 4:5] * 10  # the class token points at spatial token 4
    tokens = torch.cat([cls, spatial], dim=1)
    kept, _, k = prune_tokens(tokens, 1 / 6, "cls_attention", num_prefix_tokens=1)
    assert k == 1 and torch.equal(kept[0, 0], spatial[0, 4])
    full, _, k = prune_tokens(tokens, 1.0, "l2", num_prefix_tokens=1)
    assert k == 6 and torch.equal(full, spatial)  # keep_ratio 1: every spatial token, no prefix
    # A caller with the real attention row passes it.
    attention = torch.tensor([[0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])
    kept, _, _ = prune_tokens(tokens, 1 / 6, "cls_attention", 1, attention=attention)
    assert torch.equal(kept[0, 0], spatial[0, 2])


def test_random_pruning_is_seeded_and_padding_goes_first() -> None:
    tokens = torch.randn(4, 20, 8)
    a = prune_tokens(tokens, 0.5, "random", 0, generator=torch.Generator().manual_seed(3))[0]
    b = prune_tokens(tokens, 0.5, "random", 0, generator=torch.Generator().manual_seed(3))[0]
    c = prune_tokens(tokens, 0.5, "random", 0, generator=torch.Generator().manual_seed(4))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(prune_tokens(tokens, 0.5, "random", 0)[0], prune_tokens(tokens, 0.5, "random", 0)[0])
    mask = torch.ones(4, 20, dtype=torch.bool)
    mask[:, 12:] = False
    big = tokens.clone()
    big[:, 12:] *= 100  # padded tokens with huge norms still go first
    kept, kept_mask, k = prune_tokens(big, 0.5, "l2", 0, mask=mask)
    assert k == 10 and kept_mask.all() and (kept.norm(dim=-1) < 100).all()
    _, kept_mask, _ = prune_tokens(big, 0.9, "l2", 0, mask=mask)
    assert kept_mask.sum(dim=1).tolist() == [12] * 4  # 18 kept, of which 12 real


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keep_ratio": 0.0}, "keep_ratio must be a number in \\(0, 1\\]"),
        ({"keep_ratio": 1.5}, "keep_ratio"),
        ({"keep_ratio": True}, "keep_ratio"),
        ({"keep_ratio": "0.5"}, "keep_ratio"),
        ({"rule": "entropy"}, "prune_rule must be one of"),
        ({"rule": "cls_attention", "num_prefix_tokens": 0}, "needs a class token"),
        ({"num_prefix_tokens": 9}, "num_prefix_tokens must be"),
    ],
)
def test_pruning_refuses_bad_options(kwargs: dict, message: str) -> None:
    args = {"keep_ratio": 0.5, "rule": "l2", "num_prefix_tokens": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        prune_tokens(torch.randn(2, 9, 4), **args)


# ---------------------------------------------------------------- decoder


def small_decoder(**kwargs) -> CaptionDecoder:
    options = {
        "visual_dim": 12,
        "vocab_size": 11,
        "d_model": 16,
        "layers": 2,
        "heads": 4,
        "ff_dim": 32,
        "max_length": 8,
        **kwargs,
    }
    return CaptionDecoder(**options)


def test_study_defaults() -> None:
    decoder = CaptionDecoder(visual_dim=768, vocab_size=2033)
    layer = decoder.decoder.layers[0]
    assert len(decoder.decoder.layers) == 2 and decoder.d_model == 512
    assert layer.self_attn.num_heads == 4 and layer.linear1.out_features == 2048 and layer.dropout.p == 0.1
    assert decoder.keep_ratio == 1.0 and decoder.prune_rule == "l2"


def test_shapes_pruning_and_step() -> None:
    decoder = small_decoder(keep_ratio=0.5, num_prefix_tokens=1).eval()
    tokens = torch.randn(3, 1 + 10, 12)
    memory, memory_mask = decoder.memory(tokens, None)
    assert memory.shape == (3, 5, 16) and memory_mask is None
    ids = torch.tensor([[1, 5, 6, 2, 0, 0], [1, 7, 2, 0, 0, 0], [1, 4, 4, 4, 4, 2]])
    logits = decoder(memory, memory_mask, ids)
    assert logits.shape == (3, 6, 11)
    logp = decoder.step(memory, memory_mask, ids[:, :3])
    assert logp.shape == (3, 11) and torch.allclose(logp.exp().sum(-1), torch.ones(3))
    assert torch.allclose(logp, logits[:, 2].log_softmax(-1), atol=1e-5)


def test_self_attention_is_causal_and_ignores_padding() -> None:
    decoder = small_decoder().eval()
    memory, _ = decoder.memory(torch.randn(2, 9, 12), None)
    ids = torch.tensor([[1, 5, 6, 7, 2, 0], [1, 5, 6, 7, 2, 0]])
    changed = ids.clone()
    changed[1, 3] = 9  # a later token changes; earlier outputs must not
    out = decoder(memory[:1].expand(2, -1, -1), None, torch.cat([ids[:1], changed[1:]]))
    assert torch.allclose(out[0, :3], out[1, :3], atol=1e-5) and not torch.allclose(out[0, 3], out[1, 3], atol=1e-5)
    padded = torch.tensor([[1, 5, 6, 0, 0, 0]])
    short = decoder(memory[:1], None, padded[:, :3])
    assert torch.allclose(decoder(memory[:1], None, padded)[:, :3], short, atol=1e-5)


def test_memory_mask_hides_padded_visual_tokens() -> None:
    decoder = small_decoder().eval()
    tokens = torch.randn(1, 6, 12)
    mask = torch.tensor([[True, True, True, True, False, False]])
    noisy = tokens.clone()
    noisy[:, 4:] = torch.randn(1, 2, 12) * 50
    ids = torch.tensor([[1, 5, 6]])
    a = decoder(*decoder.memory(tokens, mask), ids)
    b = decoder(*decoder.memory(noisy, mask), ids)
    assert torch.allclose(a, b, atol=1e-5)


def test_loss_and_accuracy_skip_padding_and_the_decoder_learns() -> None:
    torch.manual_seed(0)
    decoder = small_decoder(dropout=0.0, positions="sinusoidal")
    tokens = torch.randn(2, 4, 12)
    ids = torch.tensor([[1, 5, 6, 7, 2, 0, 0], [1, 8, 9, 2, 0, 0, 0]])  # caption depends on the image
    optimiser = torch.optim.AdamW(decoder.parameters(), lr=1e-2)
    first = None
    for _ in range(60):
        logits = decoder(*decoder.memory(tokens, None), ids)
        loss = teacher_forced_loss(logits, ids)
        first = first if first is not None else float(loss.detach())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    assert first > 2.0 and loss.item() < 0.05
    correct, counted = token_accuracy(logits, ids)
    assert (correct, counted) == (7, 7)  # 4 + 3 targets, PAD never counted
    decoder.eval()
    memory, memory_mask = decoder.memory(tokens, None)
    decoded = greedy(lambda x: decoder.step(memory, memory_mask, x), 2, 1, 2, max_length=8)
    assert decoded.tolist() == [[1, 5, 6, 7, 2], [1, 8, 9, 2, 0]]
    beams = beam_search(lambda x: decoder.step(memory.repeat_interleave(3, 0), None, x), 2, 1, 2, max_length=8, beam_size=3)
    assert beams.tolist() == decoded.tolist()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"d_model": 18, "heads": 4}, "heads \\(4\\) must divide d_model \\(18\\)"),
        ({"keep_ratio": 0}, "keep_ratio"),
        ({"prune_rule": "cls_attention"}, "needs a class token"),
        ({"positions": "rotary"}, "positions must be one of"),
        ({"dropout": 1.0}, "dropout"),
        ({"layers": 0}, "layers must be"),
        ({"max_length": 1}, "max_length"),
    ],
)
def test_decoder_refuses_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_decoder(**kwargs)


def test_too_long_input_is_refused() -> None:
    decoder = small_decoder()
    memory, _ = decoder.memory(torch.randn(1, 4, 12), None)
    with pytest.raises(ValueError, match="max_length 8"):
        decoder(memory, None, torch.ones(1, 9, dtype=torch.long))


# ---------------------------------------------------------------- decoding

BOS, EOS, PAD = 1, 2, 0


def markov_step(table: torch.Tensor):
    """A step function whose next-token log-probs depend on (position, last token)."""

    def step(ids: torch.Tensor) -> torch.Tensor:
        return table[ids.shape[1] - 1, ids[:, -1]]

    return step


def brute_force_best(table: torch.Tensor, max_length: int, length_penalty: float) -> tuple[list[int], float]:
    """Best BOS-started sequence by exhaustive enumeration of every ending (EOS or max_length)."""
    vocab = table.shape[-1]
    best, best_score = None, -math.inf
    for n in range(1, max_length):
        for tail in itertools.product(range(vocab), repeat=n):
            if EOS in tail[:-1] or PAD in tail:
                continue
            if tail[-1] != EOS and n != max_length - 1:
                continue
            seq = [BOS, *tail]
            score = sum(float(table[t, seq[t], seq[t + 1]]) for t in range(n))
            normalised = score / n**length_penalty
            if normalised > best_score:
                best, best_score = seq, normalised
    return best, best_score


def random_table(seed: int, vocab: int, max_length: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(max_length, vocab, vocab, generator=g) * 2
    logits[..., PAD] = -1e9  # a model never proposes PAD
    return logits.log_softmax(-1)


def test_beam_finds_the_sequence_greedy_misses() -> None:
    # First token: A (3) at 0.6, B (4) at 0.4. After A everything is spread thin; after B, EOS is sure.
    table = torch.full((4, 5, 5), -1e9)
    table[0, BOS, 3], table[0, BOS, 4] = math.log(0.6), math.log(0.4)
    table[1, 3, 2:5] = math.log(1 / 3)
    table[1, 4, EOS] = 0.0
    table[2, :, EOS] = 0.0
    step = markov_step(table)
    assert greedy(step, 1, BOS, EOS, max_length=5)[0, :2].tolist() == [BOS, 3]
    assert beam_search(step, 1, BOS, EOS, 5, beam_size=2, length_penalty=0.0).tolist() == [[BOS, 4, EOS, PAD]]


@pytest.mark.parametrize("seed", range(6))
def test_beam_size_one_is_greedy(seed: int) -> None:
    table = random_table(seed, vocab=6, max_length=7)
    batch_table = markov_step(table)
    assert torch.equal(beam_search(batch_table, 3, BOS, EOS, 7, beam_size=1), greedy(batch_table, 3, BOS, EOS, 7))


@pytest.mark.parametrize(("seed", "length_penalty"), [(s, lp) for s in range(4) for lp in (0.0, 1.0)])
def test_wide_beam_equals_brute_force(seed: int, length_penalty: float) -> None:
    max_length, vocab = 5, 5
    table = random_table(100 + seed, vocab, max_length)
    best, _ = brute_force_best(table, max_length, length_penalty)
    # A beam as wide as every live prefix never prunes the optimum.
    found = beam_search(
        markov_step(table), 1, BOS, EOS, max_length, beam_size=vocab ** (max_length - 1), length_penalty=length_penalty
    )
    assert [t for t in found[0].tolist() if t != PAD] == best


def test_eos_handling_and_max_length() -> None:
    table = torch.full((6, 5, 5), -1e9)
    table[:, :, 3] = 0.0  # always "3"...
    table[2, 3, 3], table[2, 3, EOS] = -1e9, 0.0  # ...until position 2 says EOS
    step = markov_step(table)
    assert greedy(step, 2, BOS, EOS, max_length=6).tolist() == [[BOS, 3, 3, EOS]] * 2
    assert greedy(step, 1, BOS, EOS, max_length=3).tolist() == [[BOS, 3, 3]]  # cut at max_length, no EOS
    assert beam_search(step, 2, BOS, EOS, 3, beam_size=2).shape == (2, 3)
    # Rows finish at different times: the finished row is padded, the other goes on.
    says_eos, says_3 = torch.tensor([-9.0, -9, 0, -9, -9]), torch.tensor([-9.0, -9, -9, 0, -9])
    out = greedy(lambda ids: torch.stack([says_eos, says_3]), 2, BOS, EOS, 5)
    assert out.tolist() == [[BOS, EOS, PAD, PAD, PAD], [BOS, 3, 3, 3, 3]]
    with pytest.raises(ValueError, match="max_length"):
        greedy(step, 1, BOS, EOS, max_length=1)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(step, 1, BOS, EOS, 5, beam_size=0)
