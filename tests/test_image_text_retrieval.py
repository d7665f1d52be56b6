"""image_text_retrieval: metrics against an independent brute-force reference (ties, K beyond the
candidate set, shared keys, fixed candidate sets), exact chance levels, the grouped loss, options."""

from __future__ import annotations

import contextlib
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlbench import bootstrap
from vlbench.errors import UserError
from vlbench.plugins.tasks import image_text_retrieval as itr
from vlbench.plugins.tasks._retrieval import chance_levels, retrieval_metrics
from vlbench.types import Batch, Split, TokenizedText

AXES = torch.eye(3)
# Few distinct unit vectors: many scores tie exactly (equal vectors give equal dot products).
VECTORS = torch.cat([AXES, F.normalize(torch.tensor([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]]), dim=1)])


class FakeLoader:
    """Images are given as their embeddings; texts are looked up by the model."""

    device = torch.device("cpu")

    def __init__(self, image_vectors: torch.Tensor):
        self.image_vectors = image_vectors

    def images(self, split, batch_size=None):
        for lo in range(0, len(split), 3):
            index = torch.arange(lo, min(lo + 3, len(split)))
            yield index, self.image_vectors[index]

    def texts(self, texts, batch_size=None):
        for lo in range(0, len(texts), 4):
            yield torch.arange(lo, min(lo + 4, len(texts))), list(texts[lo : lo + 4])

    def autocast(self):
        return contextlib.nullcontext()


class FakeModel:
    def __init__(self, text_vectors: dict[str, torch.Tensor]):
        self.text_vectors = text_vectors

    def encode_image(self, images):
        return images

    def encode_text(self, texts):
        return torch.stack([self.text_vectors[t] for t in texts])


def _reference_ranks(scores: np.ndarray, relevant: list[set[int]]) -> np.ndarray:
    """Best 1-based position of a relevant item in a stable descending sort, query by query."""
    ranks = []
    for row, rel in zip(scores, relevant, strict=True):
        order = sorted(range(len(row)), key=lambda g: (-row[g], g))
        ranks.append(1 + min(order.index(g) for g in rel))
    return np.array(ranks)


def _chance_hit(n: int, r: int, k: int) -> float:
    return 1.0 if k > n - r else 1.0 - math.comb(n - r, k) / math.comb(n, k)


def _chance_mean_rank(n: int, r: int) -> float:
    # E[min] = sum_p P(min >= p): all r relevant items among the last n - p + 1 positions.
    return sum(math.comb(n - p + 1, r) / math.comb(n, r) for p in range(1, n - r + 2))


def _random_case(rng: np.random.Generator):
    n_images = int(rng.integers(1, 9))
    shared = bool(rng.random() < 0.5)
    keys = rng.integers(0, max(1, n_images // 2), n_images) if shared else None
    captions, text_vectors = [], {}
    for i in range(n_images):
        caps = tuple(f"img{i}-cap{c}" for c in range(int(rng.integers(1, 4))))
        captions.append(caps)
        for c in caps:
            text_vectors[c] = VECTORS[rng.integers(0, len(VECTORS))]
    candidates = candidate_keys = None
    if shared and rng.random() < 0.6:
        pool = sorted(set(keys.tolist()) | set(rng.integers(0, 10, int(rng.integers(0, 4))).tolist()))
        candidate_keys = [k for k in pool for _ in range(int(rng.integers(1, 3)))]
        candidates = [f"cand{j}" for j in range(len(candidate_keys))]
        for c in candidates:
            text_vectors[c] = VECTORS[rng.integers(0, len(VECTORS))]
    split = Split(
        name="test",
        ids=[str(i) for i in range(n_images)],
        load_image=lambda i: None,
        captions=captions,
        identities=None if keys is None else tuple(int(k) for k in keys),
        candidates=candidates,
        candidate_keys=candidate_keys,
    )
    images = VECTORS[rng.integers(0, len(VECTORS), n_images)]
    ks = sorted(set(int(k) for k in rng.integers(1, 25, int(rng.integers(1, 4)))))
    return split, images, text_vectors, ks


def test_metrics_equal_brute_force_on_random_cases_with_ties_large_k_and_shared_keys() -> None:
    rng = np.random.default_rng(14)
    seen = {"shared": 0, "candidates": 0, "k_beyond_gallery": 0, "ties": 0}
    for case in range(300):
        split, images, text_vectors, ks = _random_case(rng)
        task = itr.build(ks=ks, bootstrap=0)
        metrics = task.evaluate(FakeModel(text_vectors), split, FakeLoader(images))

        image_keys = list(split.identities) if split.identities is not None else list(range(len(split)))
        captions = [(i, c) for i, caps in enumerate(split.captions) for c in caps]
        gallery = (
            list(zip(split.candidate_keys, split.candidates, strict=True))
            if split.candidates is not None
            else [(image_keys[i], c) for i, c in captions]
        )
        text = lambda c, text_vectors=text_vectors: text_vectors[c].numpy()  # noqa: E731
        img = images.numpy()
        i2t_scores = np.array([[img[i] @ text(c) for _, c in gallery] for i in range(len(split))])
        i2t_rel = [{g for g, (key, _) in enumerate(gallery) if key == image_keys[i]} for i in range(len(split))]
        t2i_scores = np.array([[text(c) @ img[j] for j in range(len(split))] for _, c in captions])
        t2i_rel = [{j for j in range(len(split)) if image_keys[j] == image_keys[i]} for i, _ in captions]
        for direction, scores, rel in (("i2t", i2t_scores, i2t_rel), ("t2i", t2i_scores, t2i_rel)):
            ranks = _reference_ranks(scores, rel)
            n = scores.shape[1]
            for k in ks:
                assert metrics.values[f"{direction}_R{k}"] == pytest.approx(100.0 * np.mean(ranks <= k), abs=1e-9), (
                    case,
                    direction,
                    k,
                )
                expected = 100.0 * np.mean([_chance_hit(n, len(r), k) for r in rel])
                assert metrics.chance[f"{direction}_R{k}"] == pytest.approx(expected, abs=1e-9)
                seen["k_beyond_gallery"] += k >= n
            assert metrics.values[f"{direction}_mean_rank"] == pytest.approx(ranks.mean(), abs=1e-9)
            assert metrics.chance[f"{direction}_mean_rank"] == pytest.approx(np.mean([_chance_mean_rank(n, len(r)) for r in rel]))
            seen["ties"] += any(len(set(row.tolist())) < len(row) for row in scores)
        rsum = sum(metrics.values[f"{d}_R{k}"] for d in ("i2t", "t2i") for k in ks)
        assert metrics.values["rsum"] == pytest.approx(rsum)
        assert metrics.values["r_mean"] == pytest.approx(rsum / (2 * len(ks)))

        # One bootstrap draw against the test set it stands for: drawn units' images and captions,
        # repeats included; a fixed candidate set stays whole.
        units = np.unique(image_keys)
        times = dict(zip(units.tolist(), np.bincount(rng.integers(0, len(units), len(units)), minlength=len(units)), strict=True))
        drawn_images = [i for i in range(len(split)) for _ in range(times[image_keys[i]])]
        drawn_captions = [j for j, (i, _) in enumerate(captions) for _ in range(times[image_keys[i]])]
        drawn_gallery = range(len(gallery)) if split.candidates is not None else drawn_captions
        sides = {
            "i2t": (
                i2t_scores[np.ix_(drawn_images, drawn_gallery)],
                [image_keys[i] for i in drawn_images],
                [gallery[g][0] for g in drawn_gallery],
            ),
            "t2i": (
                t2i_scores[np.ix_(drawn_captions, drawn_images)],
                [image_keys[captions[j][0]] for j in drawn_captions],
                [image_keys[i] for i in drawn_images],
            ),
        }
        got = metrics.per_unit.statistic(np.repeat(units, [times[u] for u in units.tolist()]))
        for direction, (scores, query_keys, gallery_keys) in sides.items():
            ranks = _reference_ranks(scores, [{g for g, key in enumerate(gallery_keys) if key == q} for q in query_keys])
            for k in ks:
                assert got[f"{direction}_R{k}"] == pytest.approx(100.0 * np.mean(ranks <= k), abs=1e-9), (case, direction)
            assert got[f"{direction}_mean_rank"] == pytest.approx(ranks.mean(), abs=1e-9), (case, direction)
        seen["shared"] += split.identities is not None
        seen["candidates"] += split.candidates is not None
    assert min(seen.values()) >= 30, seen  # every situation is exercised many times


def test_chance_is_exact_for_study_003_sizes() -> None:
    """10,000 ordered-pair candidates, one relevant each: Top-1/10/100 chance 0.01/0.1/1 %."""
    keys = np.arange(50)
    chance = itr.chance_levels(keys, np.arange(10_000), ks=(1, 10, 100))
    assert chance["R1"] == pytest.approx(0.01) and chance["R10"] == pytest.approx(0.1) and chance["R100"] == pytest.approx(1.0)
    assert itr.mean_rank_chance(keys, np.arange(10_000)) == pytest.approx(10_001 / 2)


def test_grouped_loss_treats_captions_of_the_same_image_as_positives() -> None:
    torch.manual_seed(0)
    image = F.normalize(torch.randn(4, 8), dim=1)
    text = F.normalize(torch.randn(4, 8), dim=1)

    class Model:
        encode_image = staticmethod(lambda x: x)
        encode_text = staticmethod(lambda t: t.input_ids.float())
        logit_scale = staticmethod(lambda: torch.tensor(10.0))

    tokens = TokenizedText(text, torch.ones(4, 8, dtype=torch.bool))
    # Rows 0 and 1 are two captions of image 7 (the same image twice in the batch).
    batch = Batch(images=image, text=tokens, identities=None, labels=None, index=torch.tensor([7, 7, 2, 5]))
    loss = itr.grouped_info_nce(Model(), batch)
    logits = 10.0 * image @ text.T
    targets = torch.tensor([[0.5, 0.5, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
    manual = (-(targets * logits.log_softmax(1)).sum(1).mean() - (targets * logits.T.log_softmax(1)).sum(1).mean()) / 2
    assert loss.item() == pytest.approx(manual.item(), rel=1e-6)
    plain = (F.cross_entropy(logits, torch.arange(4)) + F.cross_entropy(logits.T, torch.arange(4))) / 2
    assert loss.item() != pytest.approx(plain.item())  # the same-image caption is not a negative


@pytest.mark.parametrize("shared", [False, True])
def test_engine_interval_resamples_images_or_keys_with_their_captions(shared: bool) -> None:
    """A resample draws units (images, or keys); each drawn unit brings its queries and its items
    into the gallery. The task's statistic on a draw equals every metric recomputed by brute force
    on the test set the draw stands for: the drawn units' images and captions, repeats included,
    ranked in a stable descending sort (ties: lower original index first)."""
    rng = np.random.default_rng(5)
    n_images = 12
    keys = tuple(int(k) for k in rng.integers(0, 4, n_images)) if shared else None
    captions = tuple(tuple(f"img{i}-cap{c}" for c in range(1 + i % 3)) for i in range(n_images))
    text_vectors = {c: VECTORS[rng.integers(0, len(VECTORS))] for caps in captions for c in caps}
    split = Split(
        name="test", ids=[str(i) for i in range(n_images)], load_image=lambda i: None, captions=captions, identities=keys
    )
    task = itr.build(ks=[1, 3], bootstrap=300)
    image_vectors = VECTORS[rng.integers(0, len(VECTORS), n_images)]
    metrics = task.evaluate(FakeModel(text_vectors), split, FakeLoader(image_vectors))
    ci95, block = bootstrap.intervals(metrics, seed=3)
    assert block["unit"] == ("key" if shared else "image") and block["n_units"] == len(set(keys or range(n_images)))
    assert set(ci95) == set(metrics.values)
    for name, (low, high) in ci95.items():
        assert low <= metrics.values[name] <= high, name
    assert bootstrap.intervals(metrics, seed=3)[0] == ci95

    image_unit = np.array(keys if shared else range(n_images))
    flat = [(i, c) for i, caps in enumerate(captions) for c in caps]
    scores = (image_vectors @ torch.stack([text_vectors[c] for _, c in flat]).T).numpy()  # [images, captions]
    for draw in range(6):
        drawn = rng.choice(np.unique(image_unit), size=len(np.unique(image_unit)))
        if draw == 0:
            drawn = np.unique(image_unit)  # the full sample gives the point values
        # The resampled test set: each drawn unit's images (and their captions) once per draw, in original order.
        times = {u: int((drawn == u).sum()) for u in np.unique(image_unit)}
        images = [i for i in range(n_images) for _ in range(times[image_unit[i]])]
        caption_rows = [j for j, (i, _) in enumerate(flat) for _ in range(times[image_unit[i]])]
        sub = scores[np.ix_(images, caption_rows)]
        caption_key = [image_unit[flat[j][0]] for j in caption_rows]
        i2t = _reference_ranks(sub, [{g for g, k in enumerate(caption_key) if k == image_unit[i]} for i in images])
        t2i = _reference_ranks(sub.T, [{g for g, i in enumerate(images) if image_unit[i] == k} for k in caption_key])
        expected = {}
        for direction, ranks in (("i2t", i2t), ("t2i", t2i)):
            for k in (1, 3):
                expected[f"{direction}_R{k}"] = 100.0 * float(np.mean(ranks <= k))
            expected[f"{direction}_mean_rank"] = float(ranks.mean())
        expected["rsum"] = sum(expected[f"{d}_R{k}"] for d in ("i2t", "t2i") for k in (1, 3))
        expected["r_mean"] = expected["rsum"] / 4
        got = metrics.per_unit.statistic(drawn)
        assert got == pytest.approx(expected, abs=1e-9), draw
        if draw == 0:
            assert got == pytest.approx(dict(metrics.values), abs=1e-9)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"ks": [0, 5]}, "ks=[0, 5]"),
        ({"ks": [-1]}, "positive"),
        ({"ks": []}, "ks=[]"),
        ({"ks": [5, 5]}, "distinct"),
        ({"main": "i2t_R3"}, "main='i2t_R3'"),
        ({"bootstrap": -1}, "bootstrap=-1"),
    ],
)
def test_bad_options_are_user_errors(options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("[", r"\[").replace("]", r"\]")):
        itr.build(**options)


def test_candidates_without_keys_are_refused() -> None:
    split = Split(name="val", ids=["a"], load_image=lambda i: None, captions=(("x",),), candidates=["x", "y"])
    with pytest.raises(ValueError, match="candidate"):
        itr.Problem.from_split(split)


def test_every_k_combination_is_cumulative() -> None:
    """R@K never falls with K (studies.md §4 row 1), whatever K set is asked for."""
    rng = np.random.default_rng(3)
    split, images, text_vectors, _ = _random_case(rng)
    for ks in itertools.combinations([1, 2, 3, 50], 3):
        values = itr.build(ks=list(ks), bootstrap=0).evaluate(FakeModel(text_vectors), split, FakeLoader(images)).values
        for d in ("i2t", "t2i"):
            recalls = [values[f"{d}_R{k}"] for k in ks]
            assert recalls == sorted(recalls)


def test_random_scorers_land_on_the_reported_chance_levels() -> None:
    """4000 random-scorer queries per direction, with shared keys and a fixed candidate set as in
    study 003 (so relevant counts differ between queries): |z| < 3 for every R@K and mean rank."""
    rng = np.random.default_rng(21)
    image_keys = rng.integers(0, 30, 4000)  # i2t: 4000 images against 1-3 candidate captions per key
    candidate_keys = np.repeat(np.arange(30), rng.integers(1, 4, 30))
    gallery_keys = np.concatenate([np.arange(30), rng.integers(0, 30, 170)])  # t2i: 4000 captions against 200 images
    ks = (1, 5, 50)
    for qids, gids in ((image_keys, candidate_keys), (rng.choice(gallery_keys, 4000), gallery_keys)):
        scores = rng.random((len(qids), len(gids)))
        got = retrieval_metrics(qids, gids, similarity=scores, ks=ks)
        expected = chance_levels(qids, gids, ks=ks) | {"mean_rank": itr.mean_rank_chance(qids, gids)}
        per_query = {f"R{k}": got["per_query"][f"R{k}"] for k in ks} | {"mean_rank": got["first_position"].astype(float)}
        for name, values in per_query.items():
            z = (values.mean() - expected[name]) / (values.std(ddof=1) / np.sqrt(len(values)))
            assert abs(z) < 3, (name, values.mean(), expected[name], z)
