"""caption_choice: pick an image's caption out of a few, the others from different people.

A multiple-choice image-to-text matching task on any dataset with captions and identities
(the embedded synthetic_pedestrians by default): each image gets its own first caption and
``choices - 1`` first captions of images of other identities, drawn with a fixed seed so every
run sees the same questions. Accuracy is the share of images whose own caption scores
highest; a random scorer gets 100 / choices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from vlbench import hookimpl
from vlbench.types import Batch, Dataset, Metrics, Register, Split, SplitLoader, TaskSpec, UnitScores

QUESTION_SEED = 0  # fixed: runs with different seeds answer the same questions


class CaptionChoice:
    objective = "embedding"  # the model offers encode_image, encode_text and logit_scale
    required_fields = frozenset({"image", "captions", "identity"})
    main_metric = "accuracy"

    def __init__(self, choices: int = 5):
        if choices < 2:
            raise ValueError(f"caption_choice: choices must be at least 2, got {choices}")
        self.choices = choices

    def num_classes(self, dataset: Dataset) -> None:
        return None  # an embedding task: no classifier head to size

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        # CLIP's symmetric InfoNCE: row i's positive is column i.
        logits = model.logit_scale() * model.encode_image(batch.images) @ model.encode_text(batch.text).t()
        target = torch.arange(len(logits), device=logits.device)
        return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2

    def questions(self, identities: list[int]) -> torch.Tensor:
        """[N, c] caption indices, column 0 the image's own caption; c = ``choices``, or fewer
        on a split too small to offer that many captions of other people to every image."""
        owner = np.asarray(identities)
        others = [np.flatnonzero(owner != person) for person in owner]
        distractors = min(self.choices - 1, min(len(o) for o in others))
        if distractors < 1:
            raise ValueError("caption_choice: the split holds one person only, so there is no wrong caption to offer")
        rng = np.random.default_rng(QUESTION_SEED)
        return torch.tensor([[i, *rng.choice(o, distractors, replace=False)] for i, o in enumerate(others)])

    def evaluate(self, model: Any, split: Split, loader: SplitLoader) -> Metrics:
        with torch.inference_mode(), loader.autocast():
            images = torch.cat([model.encode_image(x).float().cpu() for _, x in loader.images(split)])
            texts = torch.cat([model.encode_text(t).float().cpu() for _, t in loader.texts([c[0] for c in split.captions])])
        candidates = self.questions(list(split.identities))
        scores = (images[:, None, :] * texts[candidates]).sum(-1)  # [N, choices] cosine similarities
        correct = scores[:, 0] > scores[:, 1:].max(1).values  # a tie is not an answer
        return Metrics(
            values={"accuracy": 100.0 * correct.float().mean().item()},
            main="accuracy",
            chance={"accuracy": 100.0 / candidates.shape[1]},
            units={"accuracy": "%"},
            details={"n_questions": len(split), "choices": candidates.shape[1]},
            # Questions about one person are correlated: the engine's interval resamples people.
            per_unit=UnitScores(unit="identity", scores={"accuracy": (np.asarray(split.identities), 100.0 * correct.double().numpy())}),
        )


@hookimpl
def vlbench_register_tasks(register: Register) -> None:
    register(TaskSpec(
        name="caption_choice",
        factory=CaptionChoice,
        description="Pick each image's caption among captions of other people (example plugin); accuracy in %.",
        options={"choices": 5},
        objective="embedding",
        required_fields=CaptionChoice.required_fields,
        default_dataset="synthetic_pedestrians",
    ))
