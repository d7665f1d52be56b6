"""Identity-matched retrieval metrics with IRRA's semantics, computed in chunks of queries.

IRRA (``utils/metrics.py``, ``rank()``) sorts every similarity row in descending order and
marks a gallery item relevant when its identity equals the query's. For one query with ``n``
relevant items at 1-based positions ``p_1 < ... < p_n``:

* hit@k = 1 if ``p_1 <= k`` (CMC: at least one relevant item in the top k), R@k = mean x 100;
* AP = (1/n) * sum_i i / p_i (precision at each relevant position), mAP = mean x 100;
* INP = n / p_n (position of the hardest relevant item), mINP = mean x 100.

Tie-break (deterministic, and the same as a *stable* descending sort): among gallery items
with equal score, the lower gallery index ranks first. IRRA's unstable ``argsort`` leaves
ties to the sort implementation; pinning the rule makes a given score matrix always give
the same metrics, whatever the device or chunk size.

No Q x G index or match matrix is ever built. Each chunk of similarity rows is sorted once
by value (ascending, values only: numpy's vectorised sort on the CPU, about ten times faster
than ``torch.sort`` there; ``torch.sort`` on other devices), and every relevant item's score is
looked up in its sorted row with ``searchsorted``: the scores strictly above it give its
position, so the cost is one O(G log G) sort per query plus O(m log G) for its m relevant
items, whatever an identity's size. A relevant score that some other gallery score equals
needs the gallery-index tie-break: those rare (query, item) pairs count their equal scores at
a lower index directly. Memory is O(chunk x G).

For image-to-text retrieval swap the roles: the queries are the images and the gallery is
the captions (``similarity.T``, or the features swapped), each carrying its identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import sparse

DEFAULT_CHUNK_SIZE = 1024
TIE_BREAK = "equal scores rank by gallery index, lower index first (a stable descending sort)"

ArrayLike = torch.Tensor | np.ndarray | Sequence[Any]


def _ids(ids: ArrayLike, what: str) -> np.ndarray:
    ids = ids.detach().cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {ids.shape}")
    return ids


def _relevant_groups(query_ids: np.ndarray, gallery_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gallery indices grouped by identity, and each query's group (start, count) in them.

    Raises ValueError when a query has no relevant gallery item: IRRA would divide by zero
    and report NaN for that query.
    """
    order = np.argsort(gallery_ids, kind="stable")  # stable: ascending gallery index per group
    unique, starts, counts = np.unique(gallery_ids[order], return_index=True, return_counts=True)
    pos = np.searchsorted(unique, query_ids).clip(max=max(len(unique) - 1, 0))
    found = (unique[pos] == query_ids) if len(unique) else np.zeros(len(query_ids), bool)
    if not found.all():
        missing = np.flatnonzero(~found)
        raise ValueError(
            f"{len(missing)} of {len(query_ids)} queries have no gallery item with their identity "
            f"(first query indices {missing[:5].tolist()}, identities "
            f"{query_ids[missing[:5]].tolist()}); every query needs at least one relevant item"
        )
    return order, starts[pos], counts[pos]


def retrieval_metrics(
    query_ids: ArrayLike,
    gallery_ids: ArrayLike,
    *,
    similarity: torch.Tensor | np.ndarray | None = None,
    query_features: torch.Tensor | np.ndarray | None = None,
    gallery_features: torch.Tensor | np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 10),
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    count_ahead: bool = False,
) -> dict[str, Any]:
    """R@k, mAP and mINP in percent, matching on identity (see the module docstring).

    Give either ``similarity`` [Q, G] or ``query_features`` [Q, E] and ``gallery_features``
    [G, E] (scores are their dot products, computed one chunk of queries at a time, on the
    features' device). Returns ``{"R1": ..., "R5": ..., "R10": ..., "mAP": ..., "mINP": ...,
    "per_query": {same keys: float64 array [Q] in percent}, "n_relevant": int64 array [Q],
    "first_position": int64 array [Q] (1-based position of the best relevant item)}``;
    each metric is the mean of its per-query array. With ``count_ahead`` the result also holds
    ``"ahead"``: a sparse [Q, I] count, per query, of the items of each gallery identity that rank
    above its best relevant item (row sums = first_position - 1), columns in the order of
    ``"gallery_identities"`` (the sorted distinct gallery ids); a bootstrap that redraws the
    gallery by identity reweights these columns instead of ranking again. From features, a score may differ in its
    last bit with the chunk size or device (matmul rounding); pass ``similarity`` when
    bit-exact ties matter.
    """
    if similarity is not None:
        if query_features is not None or gallery_features is not None:
            raise ValueError("give either similarity or features, not both")
    elif query_features is None or gallery_features is None:
        raise ValueError("give either similarity or both query_features and gallery_features")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if not ks or any(int(k) < 1 for k in ks):
        raise ValueError(f"ks must be positive integers, got {tuple(ks)}")

    if similarity is not None:
        similarity_t = torch.as_tensor(similarity)
        if similarity_t.ndim != 2:
            raise ValueError(f"similarity must be [Q, G], got shape {tuple(similarity_t.shape)}")
        n_queries, n_gallery = similarity_t.shape
        device = similarity_t.device

        def scores(rows: torch.Tensor) -> torch.Tensor:
            return similarity_t[rows]
    else:
        queries = torch.as_tensor(query_features)
        gallery = torch.as_tensor(gallery_features, device=queries.device)
        if queries.ndim != 2 or gallery.ndim != 2 or (queries.shape[1] != gallery.shape[1]):
            raise ValueError(f"features must be [Q, E] and [G, E], got {tuple(queries.shape)} and {tuple(gallery.shape)}")
        n_queries, n_gallery = queries.shape[0], gallery.shape[0]
        device = queries.device

        def scores(rows: torch.Tensor) -> torch.Tensor:
            return queries[rows] @ gallery.T

    qids, gids = _ids(query_ids, "query_ids"), _ids(gallery_ids, "gallery_ids")
    if n_queries == 0 or n_gallery == 0:
        raise ValueError(f"empty retrieval problem: {n_queries} queries, {n_gallery} gallery items")
    if len(qids) != n_queries or len(gids) != n_gallery:
        raise ValueError(f"{len(qids)} query ids and {len(gids)} gallery ids for a {n_queries} x {n_gallery} problem")
    order, starts, counts = _relevant_groups(qids, gids)
    order_t = torch.from_numpy(order).to(device)
    if count_ahead:
        gallery_identities, gallery_column = np.unique(gids, return_inverse=True)
        ahead_pieces: list[sparse.csr_matrix] = []

    first = np.empty(n_queries, np.int64)  # position of the best relevant item
    ap = np.empty(n_queries, np.float64)
    inp = np.empty(n_queries, np.float64)
    # Chunks of queries with similar numbers of relevant items: a chunk's cost grows with its largest.
    by_size = np.argsort(counts, kind="stable")
    for lo in range(0, n_queries, chunk_size):
        rows = by_size[lo : lo + chunk_size]
        rows_t = torch.from_numpy(rows).to(device)
        sims = scores(rows_t)

        # Relevant gallery indices of each query, padded to the chunk's largest group.
        n_rel = torch.from_numpy(counts[rows]).to(device)
        slot = torch.arange(int(n_rel.max()), device=device)
        valid = slot[None, :] < n_rel[:, None]
        flat = torch.from_numpy(starts[rows]).to(device)[:, None] + slot[None, :]
        relevant = order_t[torch.where(valid, flat, 0)]  # [c, m]; padded slots are masked below
        positions = _relevant_positions(sims, relevant, valid, rows).double()

        rank_of_hit = torch.arange(1, positions.shape[1] + 1, device=device, dtype=torch.float64)
        precision = torch.where(valid, rank_of_hit[None, :] / positions, 0.0)
        last = positions.gather(1, (n_rel - 1)[:, None]).squeeze(1)
        first[rows] = positions[:, 0].long().cpu().numpy()
        if count_ahead:
            ahead_pieces.append(_ahead_by_identity(sims, relevant, valid, rows, gallery_column, len(gallery_identities)))
        ap[rows] = (precision.sum(1) / n_rel).cpu().numpy()
        inp[rows] = (n_rel / last).cpu().numpy()

    per_query = {f"R{int(k)}": 100.0 * (first <= int(k)) for k in ks}
    per_query["mAP"] = 100.0 * ap
    per_query["mINP"] = 100.0 * inp
    result: dict[str, Any] = {name: float(values.mean()) for name, values in per_query.items()}
    result["per_query"] = per_query
    result["n_relevant"] = counts.astype(np.int64)
    result["first_position"] = first  # 1-based position of each query's best relevant item
    if count_ahead:
        ahead = sparse.vstack(ahead_pieces, format="csr")[np.argsort(by_size, kind="stable")]
        if not np.array_equal(np.asarray(ahead.sum(1)).reshape(-1) + 1, first):
            raise AssertionError("items counted ahead of the best relevant item disagree with its position")
        result["ahead"], result["gallery_identities"] = ahead, gallery_identities
    return result


def _ahead_by_identity(
    sims: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor, rows: np.ndarray, column: np.ndarray, n_columns: int
) -> sparse.csr_matrix:
    """[c, I] counts of the items ranked above each query's best relevant item, by identity.

    The best relevant item has the highest score, and the lowest gallery index among equal
    scores (the tie rule), so the items above it are those with a higher score or an equal score
    at a lower index: all of them irrelevant by construction.
    """
    scores = torch.where(valid, sims.gather(1, relevant), -torch.inf)
    best = scores.max(1).values
    best_index = torch.where(valid & (scores == best[:, None]), relevant, sims.shape[1]).min(1).values
    index = torch.arange(sims.shape[1], device=sims.device)
    above = (sims > best[:, None]) | ((sims == best[:, None]) & (index[None, :] < best_index[:, None]))
    row, item = (part.cpu().numpy() for part in torch.nonzero(above, as_tuple=True))
    data = np.ones(len(row), np.int32)
    return sparse.csr_matrix((data, (row, column[item])), shape=(len(rows), n_columns))  # duplicates summed


def _sorted_rows(sims: torch.Tensor) -> torch.Tensor:
    """Each row's scores in ascending order. On the CPU numpy's sort (x86-simd-sort) beats
    ``torch.sort`` about tenfold on float32 rows; elsewhere the device sorts."""
    if sims.device.type == "cpu":
        return torch.from_numpy(np.sort(sims.detach().numpy(), axis=1))
    return sims.sort(dim=1).values


def _relevant_positions(sims: torch.Tensor, relevant: torch.Tensor, valid: torch.Tensor, queries: np.ndarray) -> torch.Tensor:
    """1-based positions [c, m] of each query's relevant items, ascending; padding is G + 1.

    A relevant item's position is 1 + the number of scores above it + the number of equal
    scores at a lower gallery index. The first comes from a ``searchsorted`` of its score in
    the row sorted once; the second only where another score equals it (``searchsorted``'s
    left and right ends differ by more than the item itself), counted for those pairs alone.
    """
    n_gallery = sims.shape[1]
    if sims.dtype in (torch.float16, torch.bfloat16):
        sims = sims.float()  # exact: the order and the ties stay as they were
    ascending = _sorted_rows(sims)
    finite = torch.isfinite(ascending[:, 0]) & torch.isfinite(ascending[:, -1])  # NaN sorts last
    if not finite.all():
        bad = sorted(queries[torch.nonzero(~finite).flatten().cpu().numpy()].tolist())
        raise ValueError(f"non-finite similarity for {len(bad)} queries (first query indices {bad[:5]})")
    scores = sims.gather(1, relevant)
    not_above = torch.searchsorted(ascending, scores, right=True)
    ahead = n_gallery - not_above  # scores strictly above each relevant item
    tied = ((not_above - torch.searchsorted(ascending, scores)) > 1) & valid
    rows, slots = torch.nonzero(tied, as_tuple=True)
    block = max(1, 2**24 // n_gallery)  # (pairs x G) comparisons at a time
    for lo in range(0, len(rows), block):
        r, s = rows[lo : lo + block], slots[lo : lo + block]
        index = relevant[r, s]
        earlier = torch.arange(n_gallery, device=sims.device)[None, :] < index[:, None]
        ahead[r, s] += ((sims[r] == scores[r, s][:, None]) & earlier).sum(1)
    return torch.where(valid, ahead + 1, n_gallery + 1).sort(dim=1).values


def expected_random_ap(n_relevant: ArrayLike | int, n_total: int) -> np.ndarray:
    """Exact expected AP (fraction, not percent) of a uniformly random ranking of ``n_total``
    items of which ``n_relevant`` are relevant: (H_G + (r - 1) (G - H_G) / (G - 1)) / G with
    H_G the G-th harmonic number (1 when G = 1). A relevant item sits at a uniform position p
    and each of the other r - 1 is ahead of it with probability (p - 1) / (G - 1), so the
    expected precision at it is (1/G) sum_p (1 + (r - 1)(p - 1) / (G - 1)) / p; AP averages r
    such equal terms. Also sklearn's ``average_precision_score`` of continuous random scores.
    """
    r = np.asarray(n_relevant, dtype=np.float64)
    if n_total == 1:
        return np.ones_like(r)
    harmonic = float(np.sum(1.0 / np.arange(1, n_total + 1)))
    return (harmonic + (r - 1) * (n_total - harmonic) / (n_total - 1)) / n_total


def _log_comb(n: np.ndarray | int, k: np.ndarray | int) -> np.ndarray:
    """log C(n, k) for 0 <= k <= n, via lgamma so large galleries do not overflow."""
    n_t = torch.as_tensor(n, dtype=torch.float64)
    k_t = torch.as_tensor(k, dtype=torch.float64)
    return (torch.lgamma(n_t + 1) - torch.lgamma(k_t + 1) - torch.lgamma(n_t - k_t + 1)).numpy()


def chance_levels(query_ids: ArrayLike, gallery_ids: ArrayLike, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Exact expected R@k, mAP and mINP (percent) of a uniformly random ranking.

    All three are closed forms or finite sums (no Monte Carlo). For a query with r relevant
    items among G:

    * P(hit@k) = 1 - C(G - r, k) / C(G, k)  (no relevant item in a random k-subset), and 1
      when k > G - r;
    * E[AP]: :func:`expected_random_ap`;
    * E[INP] = sum_{m=r..G} P(last relevant at m) * r / m, P = C(m - 1, r - 1) / C(G, r).

    Each is averaged over the queries, grouped by r since G is shared.
    """
    qids, gids = _ids(query_ids, "query_ids"), _ids(gallery_ids, "gallery_ids")
    _, _, counts = _relevant_groups(qids, gids)
    g = len(gids)
    r_values, n_with_r = np.unique(counts, return_counts=True)
    weight = n_with_r / n_with_r.sum()

    def p_hit(r: int, k: int) -> float:
        if k > g - r:
            return 1.0
        return 1.0 - float(np.exp(_log_comb(g - r, k) - _log_comb(g, k)))

    def expected_ap(r: int) -> float:
        return float(expected_random_ap(r, g))

    def expected_inp(r: int) -> float:
        last = np.arange(r, g + 1)
        p_last = np.exp(_log_comb(last - 1, r - 1) - _log_comb(g, r))
        return float(np.sum(p_last * r / last))

    def average(per_r: Any) -> float:
        return 100.0 * float(sum(w * per_r(int(r)) for r, w in zip(r_values, weight, strict=True)))

    chance = {f"R{int(k)}": average(lambda r, k=int(k): p_hit(r, k)) for k in ks}
    chance["mAP"] = average(expected_ap)
    chance["mINP"] = average(expected_inp)
    return chance
