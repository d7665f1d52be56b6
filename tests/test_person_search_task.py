"""The person_search task and the contrastive fusion, with a fake loader and fake models."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vlbench.bootstrap import intervals
from vlbench.errors import UserError
from vlbench.objectives import symmetric_info_nce
from vlbench.plugins.fusion import contrastive
from vlbench.plugins.tasks import person_search
from vlbench.types import (
    Batch,
    ComponentSpec,
    EncoderOutput,
    FusionSpec,
    Split,
    SplitLoader,
    TaskSpec,
    TextInfo,
    TokenizedText,
    VisionInfo,
)


def registered(hook) -> ComponentSpec:
    specs: list[ComponentSpec] = []
    hook(specs.append)
    assert len(specs) == 1
    return specs[0]


def make_task(**options):
    spec = registered(person_search.vlbench_register_tasks)
    return spec.factory(**{**spec.options, **options})


def make_fusion(vision: VisionInfo, text: TextInfo, **options):
    spec = registered(contrastive.vlbench_register_fusions)
    return spec.factory(vision=vision, text=text, num_classes=None, **{**spec.options, **options})


# ---------------------------------------------------------------- registration


def test_specs_declare_the_contract():
    task_spec = registered(person_search.vlbench_register_tasks)
    assert isinstance(task_spec, TaskSpec) and task_spec.name == "person_search"
    assert task_spec.objective == "embedding"
    assert task_spec.required_fields == {"image", "captions", "identity"}
    assert task_spec.default_dataset == "synthetic_pedestrians"
    task = task_spec.factory(**task_spec.options)
    assert (task.objective, task.main_metric) == ("embedding", "t2i_R1")
    assert task.required_fields == task_spec.required_fields and task.num_classes(None) is None

    fusion_spec = registered(contrastive.vlbench_register_fusions)
    assert isinstance(fusion_spec, FusionSpec) and fusion_spec.name == "contrastive"
    assert fusion_spec.objectives == {"embedding"} and fusion_spec.uses_text


# ---------------------------------------------------------------- loss


class FixedEmbeddings:
    """An embedding-objective model that ignores its inputs."""

    def __init__(self, image_emb: torch.Tensor, text_emb: torch.Tensor, scale: float):
        self.image_emb, self.text_emb, self.scale = image_emb, text_emb, torch.tensor(scale)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_emb

    def encode_text(self, text: TokenizedText) -> torch.Tensor:
        return self.text_emb

    def logit_scale(self) -> torch.Tensor:
        return self.scale


def batch_with(identities: Sequence[int]) -> Batch:
    b = len(identities)
    text = TokenizedText(torch.zeros(b, 4, dtype=torch.int64), torch.ones(b, 4, dtype=torch.bool))
    return Batch(torch.zeros(b, 3, 2, 2), text, torch.tensor(identities), None, torch.arange(b))


def unit(rows: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_loss_is_plain_info_nce_when_identities_are_distinct():
    model = FixedEmbeddings(unit(8, 16, 0), unit(8, 16, 1), 20.0)
    plain = symmetric_info_nce(model.image_emb, model.text_emb, model.scale)
    batch = batch_with([4, 1, 7, 0, 3, 9, 2, 5])
    assert torch.allclose(make_task().loss(model, batch), plain, atol=1e-6)
    assert torch.allclose(make_task(identity_aware=False).loss(model, batch), plain, atol=1e-6)


def test_identity_aware_loss_treats_same_identity_pairs_as_positives():
    model = FixedEmbeddings(unit(6, 16, 2), unit(6, 16, 3), 10.0)
    ids = [0, 1, 0, 2, 1, 0]
    logits = 10.0 * model.image_emb @ model.text_emb.T
    expected = 0.0
    for matrix in (logits, logits.T):  # image->text rows, then text->image rows
        log_p = matrix.log_softmax(1)
        for i in range(6):
            positives = [j for j in range(6) if ids[j] == ids[i]]
            expected += -log_p[i, positives].mean() / 12
    loss = make_task().loss(model, batch_with(ids))
    assert loss.item() == pytest.approx(float(expected), abs=1e-5)
    plain = make_task(identity_aware=False).loss(model, batch_with(ids))
    assert abs(loss.item() - plain.item()) > 1e-3


def test_loss_is_about_ln_batch_for_random_unit_embeddings_at_scale_one():
    model = FixedEmbeddings(unit(64, 512, 4), unit(64, 512, 5), 1.0)
    loss = make_task().loss(model, batch_with(range(64)))
    assert loss.item() == pytest.approx(math.log(64), abs=0.02)


# ---------------------------------------------------------------- fusion

VISION = VisionInfo(
    token_dim=24, pooled_dim=40, input_size=(8, 8), mean=(0.5,) * 3, std=(0.5,) * 3, num_prefix_tokens=1, grid_size=(2, 2)
)
TEXT = TextInfo(token_dim=16, pooled_dim=32, max_length=6)


def encoder_outputs(seed: int = 0) -> tuple[EncoderOutput, EncoderOutput]:
    g = torch.Generator().manual_seed(seed)
    image = EncoderOutput(torch.randn(3, 5, 24, generator=g), torch.randn(3, 40, generator=g))
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    text = EncoderOutput(torch.randn(3, 6, 16, generator=g), torch.randn(3, 32, generator=g), mask)
    return image, text


@pytest.mark.parametrize("pool", ["pooled", "mean"])
@pytest.mark.parametrize("projection", ["linear", "mlp"])
def test_fusion_gives_unit_embeddings_of_the_configured_width(pool: str, projection: str):
    fusion = make_fusion(VISION, TEXT, embed_dim=12, pool=pool, projection=projection)
    image, text = encoder_outputs()
    for emb in (fusion.embed_image(image), fusion.embed_text(text)):
        assert emb.shape == (3, 12)
        assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_mean_pool_ignores_padding_and_prefix_tokens():
    fusion = make_fusion(VISION, TEXT, pool="mean")
    image, text = encoder_outputs()
    noisy_text = EncoderOutput(text.tokens.masked_fill(~text.mask[..., None], 1e3), text.pooled, text.mask)
    noisy_image = EncoderOutput(image.tokens.clone(), image.pooled)
    noisy_image.tokens[:, 0] = 1e3  # the class token
    assert torch.allclose(fusion.embed_text(noisy_text), fusion.embed_text(text), atol=1e-6)
    assert torch.allclose(fusion.embed_image(noisy_image), fusion.embed_image(image), atol=1e-6)


def test_learnable_temperature_is_a_clamped_log_parameter():
    fusion = make_fusion(VISION, TEXT)
    scale = fusion.logit_scale()
    assert scale.ndim == 0 and scale.item() == pytest.approx(1 / 0.02)
    assert any(p is fusion.log_scale for p in fusion.parameters())
    scale.backward()
    assert fusion.log_scale.grad is not None
    with torch.no_grad():
        fusion.log_scale.fill_(math.log(1000.0))
    assert fusion.logit_scale().item() == pytest.approx(100.0)


def test_fixed_temperature_is_a_saved_buffer_not_a_parameter():
    fusion = make_fusion(VISION, TEXT, temperature=0.005, learnable_temperature=False)
    assert fusion.logit_scale().item() == pytest.approx(200.0)
    assert all(p is not fusion.log_scale for p in fusion.parameters())
    assert not fusion.logit_scale().requires_grad and "log_scale" in fusion.state_dict()


@pytest.mark.parametrize(
    "options",
    [{"pool": "max"}, {"projection": "conv"}, {"temperature": 0.0}, {"temperature": 0.005}, {"embed_dim": 0}],
)
def test_fusion_rejects_bad_options(options):
    with pytest.raises(UserError):
        make_fusion(VISION, TEXT, **options)
    with pytest.raises(UserError):
        make_fusion(VISION, None)


# ---------------------------------------------------------------- evaluate


def tiny_split(n_ids: int, per_id: int, captions_per_image: int, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    identities = rng.permutation(np.repeat(np.arange(n_ids) * 10 + 1, per_id)).tolist()
    captions, j = [], 0
    for identity in identities:
        captions.append(tuple(f"person {identity} caption {j + c}" for c in range(captions_per_image)))
        j += captions_per_image

    def load_image(i: int) -> np.ndarray:  # the pixels carry the index, so fakes can decode it
        image = np.zeros((2, 2, 3), np.uint8)
        image[..., 0], image[..., 1] = i % 256, i // 256
        return image

    return Split("test", [f"img{i}.jpg" for i in range(len(identities))], load_image, captions, identities)


class FakeLoader:
    """Follows vlbench.types.SplitLoader: batches in order, on ``device``, uneven last batch."""

    device = torch.device("cpu")

    def __init__(self, batch_size: int = 7):
        self.batch_size = batch_size

    def images(self, split: Split, batch_size: int | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        size = batch_size or self.batch_size
        for lo in range(0, len(split), size):
            index = torch.arange(lo, min(lo + size, len(split)))
            images = np.stack([split.load_image(int(i)) for i in index])
            yield index, torch.from_numpy(images).permute(0, 3, 1, 2).float().to(self.device)

    def texts(self, texts: Sequence[str], batch_size: int | None = None) -> Iterator[tuple[torch.Tensor, TokenizedText]]:
        size = batch_size or self.batch_size
        for lo in range(0, len(texts), size):
            chunk = texts[lo : lo + size]
            ids = torch.tensor([[int(t.split()[1]), int(t.split()[3])] for t in chunk])
            text = TokenizedText(ids, torch.ones_like(ids, dtype=torch.bool))
            yield torch.arange(lo, lo + len(chunk)), text.to(self.device)

    def autocast(self):
        return contextlib.nullcontext()


class FakeModel(nn.Module):
    """Oracle: one-hot identity embeddings on both sides. Random: a fixed random vector per
    image and per caption, independent of identity."""

    def __init__(self, split: Split, oracle: bool, n_captions: int = 0):
        super().__init__()
        self.identities = torch.tensor(split.identities)
        self.oracle = oracle
        g = torch.Generator().manual_seed(11)
        self.image_table = torch.randn(len(split), 32, generator=g)
        self.text_table = torch.randn(max(n_captions, 1), 32, generator=g)
        self.frozen = nn.Dropout()
        self.frozen.eval()  # a trainer may keep a tower in eval mode; evaluate must keep it so
        self.modes_seen: list[bool] = []

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self.modes_seen.append(self.training)
        index = (images[:, 0, 0, 0] + 256 * images[:, 1, 0, 0]).long()
        if self.oracle:
            return F.one_hot(self.identities[index], 100).float()
        return self.image_table[index]

    def encode_text(self, text: TokenizedText) -> torch.Tensor:
        identity, caption = text.input_ids[:, 0], text.input_ids[:, 1]
        return F.one_hot(identity, 100).float() if self.oracle else self.text_table[caption]


def test_fake_loader_follows_the_protocol():
    assert isinstance(FakeLoader(), SplitLoader)


def test_oracle_model_scores_100():
    split = tiny_split(n_ids=6, per_id=3, captions_per_image=2, seed=0)
    model = FakeModel(split, oracle=True)
    metrics = make_task(i2t=True).evaluate(model, split, FakeLoader())
    names = [f"{d}_{m}" for d in ("t2i", "i2t") for m in ("R1", "R5", "R10", "mAP", "mINP")]
    assert list(metrics.values) == names
    assert all(metrics.values[name] == 100.0 for name in names)
    assert metrics.main == "t2i_R1" and set(metrics.chance) == set(names)
    assert all(metrics.units[name] == "%" for name in names)
    ci, how = intervals(metrics, seed=0, n_resamples=200)  # the engine's interval: identities resampled
    assert ci["t2i_R1"] == [100.0, 100.0] and how["unit"] == "identity" and how["n_units"] == 6
    assert metrics.details["n_queries"] == 36 and metrics.details["n_gallery"] == 18
    assert metrics.details["n_identities"] == 6 and "lower index" in metrics.details["tie_break"]
    assert metrics.chance["t2i_R1"] == pytest.approx(100 * 3 / 18)
    assert metrics.chance["i2t_R1"] == pytest.approx(100 * 6 / 36)


def test_evaluate_restores_every_module_mode():
    split = tiny_split(n_ids=3, per_id=2, captions_per_image=1, seed=1)
    model = FakeModel(split, oracle=True)
    model.train()
    model.frozen.eval()
    make_task(bootstrap=0).evaluate(model, split, FakeLoader())
    assert model.modes_seen and not any(model.modes_seen)
    assert model.training and not model.frozen.training


def test_random_model_scores_about_chance():
    split = tiny_split(n_ids=50, per_id=4, captions_per_image=2, seed=2)
    model = FakeModel(split, oracle=False, n_captions=400)
    metrics = make_task(bootstrap=200, chunk_size=64).evaluate(model, split, FakeLoader(batch_size=32))
    n_queries = metrics.details["n_queries"]
    assert n_queries == 400 and set(metrics.values) == {"t2i_R1", "t2i_R5", "t2i_R10", "t2i_mAP", "t2i_mINP"}
    for k in (1, 5, 10):
        p = metrics.chance[f"t2i_R{k}"] / 100
        assert abs(metrics.values[f"t2i_R{k}"] - 100 * p) < 4 * 100 * math.sqrt(p * (1 - p) / n_queries)
    assert metrics.values["t2i_mAP"] == pytest.approx(metrics.chance["t2i_mAP"], abs=2.0)
    assert metrics.values["t2i_mINP"] == pytest.approx(metrics.chance["t2i_mINP"], abs=2.0)
    lo, hi = intervals(metrics, seed=0, n_resamples=200)[0]["t2i_R1"]
    assert lo <= metrics.values["t2i_R1"] <= hi


def test_evaluate_rejects_a_split_without_identities():
    split = tiny_split(n_ids=2, per_id=1, captions_per_image=1, seed=3)
    bare = Split("test", split.ids, split.load_image, split.captions, None)
    with pytest.raises(ValueError, match="identities"):
        make_task().evaluate(FakeModel(split, oracle=True), bare, FakeLoader())
