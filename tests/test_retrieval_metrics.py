"""retrieval_metrics against a plain brute-force transcription of IRRA's rank()."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vlbench.plugins.tasks._retrieval import chance_levels, retrieval_metrics

KS = (1, 5, 10)


def irra_reference(sims: np.ndarray, qids: np.ndarray, gids: np.ndarray, ks=KS) -> dict[str, np.ndarray]:
    """IRRA's rank() one query at a time: full sort, match row, cumsums; ties by lower index.

    Returns per-query values in percent. R@k with k beyond the gallery counts the whole row.
    """
    n_gallery = sims.shape[1]
    out: dict[str, list[float]] = {**{f"R{k}": [] for k in ks}, "mAP": [], "mINP": []}
    for q in range(sims.shape[0]):
        indices = np.argsort(-sims[q], kind="stable")  # descending; equal scores keep index order
        matches = gids[indices] == qids[q]
        cmc = np.minimum(np.cumsum(matches), 1)
        for k in ks:
            out[f"R{k}"].append(100.0 * cmc[min(k, n_gallery) - 1])
        tmp_cmc = np.cumsum(matches)
        precision = tmp_cmc / np.arange(1, n_gallery + 1)
        out["mAP"].append(100.0 * (precision * matches).sum() / matches.sum())
        r_last = np.flatnonzero(matches)[-1] + 1
        out["mINP"].append(100.0 * tmp_cmc[r_last - 1] / r_last)
    return {name: np.asarray(values) for name, values in out.items()}


def random_problem(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Several gallery items per identity, queries drawn from gallery identities, heavy ties."""
    n_ids = int(rng.integers(1, 8))
    per_id = rng.integers(1, 5, size=n_ids)
    gids = rng.permutation(np.repeat(np.arange(n_ids) * 7 + 3, per_id))  # non-contiguous ids
    qids = rng.choice(gids, size=int(rng.integers(1, 25)))
    sims = np.round(rng.uniform(-1, 1, size=(len(qids), len(gids))), 1)  # ~21 values: many ties
    return sims, qids, gids


def test_matches_brute_force_with_ties_and_any_chunk_size():
    rng = np.random.default_rng(0)
    for _ in range(200):
        sims, qids, gids = random_problem(rng)
        expected = irra_reference(sims, qids, gids)
        n_queries = len(qids)
        for chunk in sorted({1, max(1, n_queries - 1), n_queries, n_queries + 3}):
            got = retrieval_metrics(qids, gids, similarity=sims, chunk_size=chunk)
            for name, values in expected.items():
                np.testing.assert_allclose(got["per_query"][name], values, rtol=0, atol=1e-9, err_msg=name)
                assert got[name] == pytest.approx(values.mean(), abs=1e-9)
            np.testing.assert_array_equal(got["n_relevant"], [(gids == q).sum() for q in qids])


def test_matches_brute_force_without_ties_and_with_duplicate_images():
    """Continuous scores rarely tie; a duplicated gallery column ties exactly and
    takes the counting path; an identity larger than the chunk's others pads its rows."""
    rng = np.random.default_rng(9)
    for _ in range(20):
        gids = rng.permutation(np.repeat(np.arange(12), rng.integers(1, 30, size=12)))
        qids = rng.choice(gids, size=40)
        sims = rng.standard_normal((40, len(gids))).astype(np.float32)
        if rng.random() < 0.5:
            sims[:, rng.integers(len(gids))] = sims[:, 0]  # a duplicate image: exact ties
        expected = irra_reference(sims, qids, gids)
        got = retrieval_metrics(qids, gids, similarity=torch.from_numpy(sims), chunk_size=int(rng.integers(1, 50)))
        for name, values in expected.items():
            np.testing.assert_allclose(got["per_query"][name], values, atol=1e-9, err_msg=name)


def test_features_give_the_same_ranking_as_their_similarity():
    rng = np.random.default_rng(1)
    for _ in range(20):
        # Small integer features: every dot product is exact in float32, ties included.
        gids = rng.integers(0, 6, size=30)
        qids = rng.choice(gids, size=17)
        q = torch.from_numpy(rng.integers(-1, 2, size=(17, 4)).astype(np.float32))
        g = torch.from_numpy(rng.integers(-1, 2, size=(30, 4)).astype(np.float32))
        expected = irra_reference((q @ g.T).numpy(), qids, gids)
        for chunk in (5, 17, 64):
            got = retrieval_metrics(qids, gids, query_features=q, gallery_features=g, chunk_size=chunk)
            for name, values in expected.items():
                np.testing.assert_allclose(got["per_query"][name], values, atol=1e-9, err_msg=name)


def test_tie_break_prefers_lower_gallery_index():
    # All scores equal: the ranking is the gallery order, so the relevant item sits at index+1.
    gids = np.array([5, 5, 9, 5, 9])
    got = retrieval_metrics([9], gids, similarity=np.zeros((1, 5)), ks=(1, 2, 3))
    assert got["per_query"]["R1"][0] == 0.0 and got["per_query"]["R3"][0] == 100.0
    assert got["mAP"] == pytest.approx(100 * (1 / 3 + 2 / 5) / 2)
    assert got["mINP"] == pytest.approx(100 * 2 / 5)


def test_recall_is_monotone_in_k():
    rng = np.random.default_rng(2)
    for _ in range(50):
        sims, qids, gids = random_problem(rng)
        got = retrieval_metrics(qids, gids, similarity=sims, ks=(1, 2, 3, 5, 10, 50))
        recalls = [got[f"R{k}"] for k in (1, 2, 3, 5, 10, 50)]
        assert recalls == sorted(recalls)
        assert all(0.0 <= got[name] <= 100.0 for name in ("mAP", "mINP"))


def test_oracle_similarity_scores_100_everywhere():
    rng = np.random.default_rng(3)
    gids = rng.integers(0, 20, size=120)
    qids = rng.choice(gids, size=300)
    sims = (qids[:, None] == gids[None, :]) + 0.01 * rng.random((300, 120))
    got = retrieval_metrics(qids, gids, similarity=sims, chunk_size=64)
    assert all(got[name] == 100.0 for name in ("R1", "R5", "R10", "mAP", "mINP"))


def test_chance_levels_equal_the_average_over_every_permutation():
    n_gallery = 6
    for n_relevant in range(1, n_gallery + 1):
        gids = np.array([0] * n_relevant + list(range(1, n_gallery - n_relevant + 1)))
        positions = itertools.permutations(range(n_gallery))
        runs = [irra_reference(-np.array([p], float), np.array([0]), gids, ks=(1, 2, 5)) for p in positions]
        chance = chance_levels([0], gids, ks=(1, 2, 5))
        for name in chance:
            assert chance[name] == pytest.approx(np.mean([r[name][0] for r in runs]), abs=1e-9), name


def test_random_similarity_lands_near_chance():
    """6000 queries of a random scorer (each an independent trial): |z| < 3 for every level."""
    rng = np.random.default_rng(4)
    gids = rng.permutation(np.repeat(np.arange(60), rng.integers(1, 6, size=60)))
    qids = rng.choice(gids, size=6000)
    got = retrieval_metrics(qids, gids, similarity=rng.random((6000, len(gids))), chunk_size=1000)
    chance = chance_levels(qids, gids)
    for name, expected in chance.items():
        standard_error = got["per_query"][name].std(ddof=1) / np.sqrt(len(qids))
        assert abs(got[name] - expected) < 3 * standard_error, (name, got[name], expected)


def test_chance_levels_stay_finite_for_a_large_gallery():
    gids = np.repeat(np.arange(5000), 4)
    chance = chance_levels(gids[::3], gids)
    assert chance["R1"] == pytest.approx(100 * 4 / 20000)
    assert chance["R10"] == pytest.approx(100 * (1 - np.prod([(19996 - i) / (20000 - i) for i in range(10)])))
    assert all(np.isfinite(v) and 0 < v < 100 for v in chance.values())


def test_query_without_relevant_gallery_item_raises():
    with pytest.raises(ValueError, match="no gallery item with their identity"):
        retrieval_metrics([1, 2], [1, 1, 3], similarity=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no gallery item with their identity"):
        chance_levels([4], [1, 2])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="non-finite"):
        retrieval_metrics([1], [1, 2], similarity=np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="either similarity"):
        retrieval_metrics([1], [1], query_features=np.ones((1, 2)))
    with pytest.raises(ValueError, match="query ids"):
        retrieval_metrics([1, 1], [1], similarity=np.zeros((1, 1)))
