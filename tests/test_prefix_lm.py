"""The prefix-LM fusion's model: single vs multi visual tokens, caption-only logits and loss
(checked against a per-token brute force), which parameters train, generation from the
visual prefix, and its clear errors. tiny_llama over random-init encoders, offline."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vlbench.errors import UserError
from vlbench.plugins.fusion._prefix_lm import PrefixLM
from vlbench.plugins.language_models._loader import build_tiny_llama
from vlbench.plugins.vision._timm import build_timm_encoder
from vlbench.types import EncoderOutput, VisionInfo

CNN = VisionInfo(token_dim=12, pooled_dim=20, input_size=(224, 224), mean=(0.5,) * 3, std=(0.5,) * 3, grid_size=(7, 7))
VIT = VisionInfo(
    token_dim=12, pooled_dim=12, input_size=(64, 64), mean=(0.5,) * 3, std=(0.5,) * 3, num_prefix_tokens=1, grid_size=(4, 4)
)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def lm():
    return build_tiny_llama(layers=1, width=32, heads=2, context_length=96)


def features(info: VisionInfo, batch: int = 2, seed: int = 0) -> EncoderOutput:
    g = torch.Generator().manual_seed(seed)
    n = info.num_prefix_tokens + info.grid_size[0] * info.grid_size[1]
    return EncoderOutput(
        tokens=torch.randn(batch, n, info.token_dim, generator=g), pooled=torch.randn(batch, info.pooled_dim, generator=g)
    )


def test_single_and_multi_prefixes_over_a_timm_backbone(lm):
    encoder = build_timm_encoder("mobilenetv3_small_100", (224, 224)).eval()
    with torch.no_grad():
        out = encoder(torch.randn(2, 3, 224, 224))
    assert encoder.info.grid_size == (7, 7)
    for tokens, grid, length in (("single", None, 1), ("multi", None, 49), ("multi", 3, 9)):
        fusion = PrefixLM(encoder.info, lm, tokens=tokens, grid=grid, max_length=16)
        assert fusion.prefix_length == length
        assert fusion.visual_prefix(out).shape == (2, length, lm.embed_dim)


def test_multi_drops_class_tokens_and_pools_the_grid_by_averaging(lm):
    fusion = PrefixLM(VIT, lm, tokens="multi", grid=2, projection="linear", max_length=8)
    out = features(VIT)
    spatial = out.tokens[:, 1:].reshape(2, 4, 4, 12)
    pooled_by_hand = spatial.reshape(2, 2, 2, 2, 2, 12).mean(dim=(2, 4)).reshape(2, 4, 12)
    torch.testing.assert_close(fusion.visual_prefix(out), fusion.project(pooled_by_hand))


def caption_loss(fusion, out, ids):
    """The generation objective's teacher-forced loss: logits[:, t] vs ids[:, t + 1], PAD ignored."""
    logits = fusion.caption_logits(fusion.prefill(out), ids)
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten(), ignore_index=fusion.vocab.pad_id)


def test_loss_scores_caption_tokens_only(lm):
    fusion = PrefixLM(CNN, lm, tokens="single", max_length=12)
    ids, mask = lm.encode(["a red car on the left", "two dogs"], 12)
    torch.testing.assert_close(fusion.vocab.encode(["a red car on the left", "two dogs"], 12), ids)
    out = features(CNN)
    assert fusion.caption_logits(fusion.prefill(out), ids).shape == (2, 12, len(fusion.vocab))
    loss = caption_loss(fusion, out, ids)
    # Brute force: score each real caption token after BOS from a forward of its own row.
    terms = []
    for row in range(2):
        n = int(mask[row].sum())
        embeds = torch.cat([fusion.visual_prefix(out)[row : row + 1], lm.embed(ids[row : row + 1, :n])], dim=1)
        logits = lm(embeds, torch.ones(embeds.shape[:2], dtype=torch.bool)).logits[0]
        for t in range(1, n):  # token t is predicted at sequence position 1 (prefix) + t - 1
            terms.append(F.cross_entropy(logits[t].unsqueeze(0), ids[row, t].unsqueeze(0)))
    torch.testing.assert_close(loss, torch.stack(terms).mean(), atol=1e-5, rtol=1e-5)
    # Causal: the short caption's logits do not depend on how long the batch's padding is.
    shorter = fusion.caption_logits(fusion.prefill(out), ids[:, :9])
    torch.testing.assert_close(shorter[1, :4], fusion.caption_logits(fusion.prefill(out), ids)[1, :4])


@pytest.mark.parametrize("mode, lm_trains", [("frozen", set()), ("full", {"all"}), ("embeddings", {"embed_tokens"})])
def test_lm_training_modes(mode, lm_trains):
    lm = build_tiny_llama(layers=1, width=32, heads=2, context_length=64)
    fusion = PrefixLM(CNN, lm, tokens="single", lm_training=mode, max_length=8)
    trainable = {name for name, p in fusion.lm.named_parameters() if p.requires_grad}
    if lm_trains == {"all"}:
        assert trainable == {name for name, _ in fusion.lm.named_parameters()}
    else:
        assert {n.split(".")[-2] for n in trainable} == lm_trains
    assert all(p.requires_grad for p in fusion.project.parameters())
    fusion.train()
    assert fusion.lm.model.training is (mode != "frozen")
    ids, _ = lm.encode(["a cat"], 8)
    caption_loss(fusion, features(CNN, 1), ids).backward()
    assert fusion.project.weight.grad is not None and fusion.project.weight.grad.abs().sum() > 0


def test_generation_from_the_visual_prefix_follows_the_image(lm):
    fusion = PrefixLM(CNN, lm, tokens="multi", grid=2, projection="mlp", max_length=8)
    fusion.eval()
    state = fusion.prefill(features(CNN, batch=2))
    ids = torch.full((2, 1), lm.special.bos)
    for _ in range(5):
        ids = torch.cat([ids, fusion.decode_step(state, ids).argmax(-1, keepdim=True)], dim=1)
    assert ids.shape == (2, 6)
    # The cached steps agree with teacher forcing over the whole sequence.
    with torch.no_grad():
        forced = fusion.caption_logits(state, ids).argmax(-1)
    assert torch.equal(forced[:, :-1], ids[:, 1:])
    other = fusion.decode_step(fusion.prefill(features(CNN, batch=2, seed=1)), ids[:, :1])
    assert not torch.allclose(fusion.decode_step(state, ids[:, :1]), other)


def test_a_few_steps_fit_two_captions(lm):
    torch.manual_seed(0)
    fusion = PrefixLM(
        CNN,
        build_tiny_llama(layers=1, width=32, heads=2, context_length=64, freeze=False),
        tokens="single",
        lm_training="full",
        max_length=8,
    )
    ids = fusion.vocab.encode(["a red car", "two small dogs"], 8)
    out = features(CNN)
    # The LM is no submodule of the fusion (the run's model holds it as its own part): train both.
    optimizer = torch.optim.AdamW([p for p in (*fusion.parameters(), *fusion.lm.parameters()) if p.requires_grad], lr=1e-2)
    first = caption_loss(fusion, out, ids).item()
    for _ in range(40):
        optimizer.zero_grad()
        loss = caption_loss(fusion, out, ids)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.2 * first


def test_clear_errors(lm):
    with pytest.raises(UserError, match="tokens must be one of 'single', 'multi', got 'patch'"):
        PrefixLM(CNN, lm, tokens="patch")
    with pytest.raises(UserError, match="49 visual tokens \\+ max_length 48 .* exceeds the language model's context of 96"):
        PrefixLM(CNN, lm, tokens="multi", max_length=48)
    with pytest.raises(UserError, match="grid must be an integer from 1 to 7"):
        PrefixLM(CNN, lm, tokens="multi", grid=8)
    with pytest.raises(UserError, match="needs a spatial token grid"):
        PrefixLM(VisionInfo(12, 12, (64, 64), (0.5,) * 3, (0.5,) * 3), lm, tokens="multi")
    with pytest.raises(UserError, match="lm_training must be one of"):
        PrefixLM(CNN, lm, lm_training="lora")
