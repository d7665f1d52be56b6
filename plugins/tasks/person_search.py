"""Text-based person search: retrieve every image of a person from a caption (IRRA protocol).

Training pairs each image with one of its captions under a symmetric contrastive loss.
Evaluation encodes every image of the split as the gallery and every caption as a query,
matches on identity and reports IRRA's R@1/5/10, mAP and mINP (``_retrieval.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.objectives import symmetric_info_nce
from vlbench.types import Batch, CostStage, Dataset, Field, Metrics, Register, Split, SplitLoader, TaskSpec, UnitScores

from ._retrieval import TIE_BREAK, chance_levels, retrieval_metrics

KS = (1, 5, 10)


def identity_info_nce(
    image_emb: torch.Tensor,
    text_emb: torch.Tensor,
    logit_scale: torch.Tensor,
    identities: torch.Tensor,
) -> torch.Tensor:
    """Symmetric InfoNCE where every pair sharing an identity is a positive.

    Each row's target is uniform over the batch items with its identity (the multi-positive
    target of CLIP with soft labels; IRRA's SDM matches the same distribution with a KL,
    which differs from this cross-entropy only by the targets' constant entropy). With
    distinct identities the targets are one-hot and this is plain symmetric InfoNCE.
    """
    logits = logit_scale * image_emb @ text_emb.t()
    same = (identities[:, None] == identities[None, :]).to(logits.dtype)
    targets = same / same.sum(1, keepdim=True)  # symmetric, so it also serves the columns
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


def _encode_all(batches: Iterable[tuple[torch.Tensor, Any]], encode: Callable[[Any], torch.Tensor], n: int) -> torch.Tensor:
    """Encode every batch into row ``index`` of one float32 matrix, L2-normalised."""
    rows: list[torch.Tensor] = []
    indices: list[torch.Tensor] = []
    for index, inputs in batches:
        rows.append(encode(inputs).float())
        indices.append(torch.as_tensor(index).reshape(-1))
    index = torch.cat(indices).cpu() if indices else torch.empty(0, dtype=torch.int64)
    if not torch.equal(index.sort().values, torch.arange(n)):
        raise RuntimeError(f"the loader yielded {len(index)} rows that do not cover 0..{n - 1} once each")
    features = torch.cat(rows)
    ordered = torch.empty_like(features)
    ordered[index.to(features.device)] = features
    return F.normalize(ordered, dim=-1)


def _check_sane(values: dict[str, float], prefix: str, single_relevant: bool) -> None:
    """Guards from studies.md §4 rows 1-2: impossible numbers are a bug, never a result."""
    recalls = [values[f"{prefix}R{k}"] for k in KS]
    if recalls != sorted(recalls):
        raise AssertionError(f"{prefix}R@k not monotone in k: {recalls}")
    for name in [f"{prefix}R{k}" for k in KS] + [f"{prefix}mAP", f"{prefix}mINP"]:
        if not 0.0 <= values[name] <= 100.0:
            raise AssertionError(f"{name}={values[name]} outside [0, 100]")
    # With one relevant item per query AP = 1/rank >= hit@1 for every query.
    if single_relevant and values[f"{prefix}mAP"] < values[f"{prefix}R1"] - 1e-9:
        raise AssertionError(f"{prefix}mAP < {prefix}R1 with one relevant item per query")


class PersonSearchTask:
    objective = "embedding"
    required_fields: frozenset[Field] = frozenset({"image", "captions", "identity"})
    main_metric = "t2i_R1"

    def __init__(self, *, identity_aware: bool, i2t: bool, bootstrap: int, chunk_size: int):
        self.identity_aware = identity_aware
        self.i2t = i2t
        self.bootstrap = bootstrap
        self.chunk_size = chunk_size

    def num_classes(self, dataset: Dataset) -> None:
        return None

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        if batch.text is None:
            raise ValueError("person_search needs one caption per image in every batch")
        image_emb = model.encode_image(batch.images)
        text_emb = model.encode_text(batch.text)
        if not self.identity_aware:
            return symmetric_info_nce(image_emb, text_emb, model.logit_scale())
        if batch.identities is None:
            raise ValueError("person_search with identity_aware=true needs batch identities")
        return identity_info_nce(image_emb, text_emb, model.logit_scale(), batch.identities)

    def evaluate(self, model: Any, split: Split, loader: SplitLoader) -> Metrics:
        if split.captions is None or split.identities is None:
            raise ValueError(f"split {split.name!r} lacks captions or identities, which person_search needs")
        captions = [caption for image_captions in split.captions for caption in image_captions]
        caption_ids = np.asarray([split.identities[i] for i, image_captions in enumerate(split.captions) for _ in image_captions])
        image_ids = np.asarray(split.identities)
        if len(split) == 0 or not captions:
            raise ValueError(f"split {split.name!r} has {len(split)} images and {len(captions)} captions")

        # Dropout and batch-norm updates must not move scores; each module's own mode is
        # restored afterwards, since a trainer may keep a frozen tower in eval mode on purpose.
        modes = {m: m.training for m in model.modules()} if isinstance(model, nn.Module) else {}
        for module in modes:
            module.training = False
        try:
            with torch.inference_mode(), loader.autocast():
                gallery = _encode_all(loader.images(split), model.encode_image, len(split))
                queries = _encode_all(loader.texts(captions), model.encode_text, len(captions))
        finally:
            for module, training in modes.items():
                module.training = training

        values: dict[str, float] = {}
        chance: dict[str, float] = {}
        per_query: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        details: dict[str, Any] = {
            "n_queries": len(captions),
            "n_gallery": len(split),
            "n_identities": len(np.unique(image_ids)),
            "tie_break": TIE_BREAK,
        }
        directions = [("t2i_", queries, caption_ids, gallery, image_ids)]
        if self.i2t:
            directions.append(("i2t_", gallery, image_ids, queries, caption_ids))
        for prefix, q, qids, g, gids in directions:
            result = retrieval_metrics(qids, gids, query_features=q, gallery_features=g, ks=KS, chunk_size=self.chunk_size)
            for name, expected in chance_levels(qids, gids, ks=KS).items():
                values[prefix + name] = result[name]
                chance[prefix + name] = expected
            _check_sane(values, prefix, single_relevant=bool((result["n_relevant"] == 1).all()))
            # The engine's interval resamples identities: captions of one person are correlated.
            per_query |= {prefix + name: (qids, scores) for name, scores in result["per_query"].items()}
            details[f"{prefix}mean_relevant_per_query"] = float(result["n_relevant"].mean())
        if self.i2t:
            details["i2t_n_queries"] = len(split)
            details["i2t_n_gallery"] = len(captions)

        return Metrics(
            values=values,
            main=self.main_metric,
            chance=chance,
            units={name: "%" for name in values},
            details=details,
            per_unit=UnitScores(unit="identity", scores=per_query, n_resamples=self.bootstrap),
            no_interval="the task option bootstrap = 0 turned the interval off" if self.bootstrap == 0 else "",
        )

    def cost_stages(self, model: Any, split: Split, loader: SplitLoader) -> dict[str, CostStage]:
        """The search a deployed system runs: the gallery is encoded once (timed as images/s),
        then a text query goes end to end against the cached gallery, alone and as 5."""
        with torch.inference_mode(), loader.autocast():
            gallery = _encode_all(loader.images(split), model.encode_image, len(split))
        _, images = next(loader.images(split))
        assert split.captions is not None, "required_fields: the dataset check guarantees captions"
        captions = [caps[0] for caps in split.captions]
        k = min(max(KS), len(split))

        def search(n: int) -> Callable[[], Any]:
            texts = captions[:n]
            return lambda: (
                F.normalize(model.encode_text(model.tokenize(texts).to(loader.device)).float(), dim=-1) @ gallery.T
            ).topk(k, dim=1)

        return {
            "gallery_encode": CostStage(lambda: model.encode_image(images), items=len(images), unit="images"),
            "query@1": CostStage(search(1), items=1, unit="queries", group="query"),
            "query@5": CostStage(search(5), items=5, unit="queries", group="query"),
        }


def build(*, identity_aware: bool = True, i2t: bool = False, bootstrap: int = 1000, chunk_size: int = 1024) -> PersonSearchTask:
    if bootstrap < 0:
        raise UserError(
            f"task 'person_search': option bootstrap={bootstrap}; use 0 (no interval) or a positive number of resamples"
        )
    if chunk_size < 1:
        raise UserError(f"task 'person_search': option chunk_size={chunk_size}; use a positive integer")
    return PersonSearchTask(identity_aware=identity_aware, i2t=i2t, bootstrap=bootstrap, chunk_size=chunk_size)


@hookimpl
def vlbench_register_tasks(register: Register) -> None:
    register(
        TaskSpec(
            name="person_search",
            factory=build,
            description=(
                "Text-to-image person search (IRRA protocol): every caption queries every image "
                "of the split, matched on identity; R@1/5/10, mAP, mINP in %."
            ),
            options={"identity_aware": True, "i2t": False, "bootstrap": 1000, "chunk_size": 1024},
            objective="embedding",
            required_fields=frozenset({"image", "captions", "identity"}),
            default_dataset="synthetic_pedestrians",
        )
    )
