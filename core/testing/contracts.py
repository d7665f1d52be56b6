"""Contract checks every component must pass, for vlbench's own registry-wide tests and for
plugin authors' test suites. Each ``check_*`` raises AssertionError with the reason.

The task check uses a tiny identity-coded dataset (image pixels and caption tokens both
encode the sample index) with an *oracle* model that reads the truth back and a *random*
model: the oracle must reach the best score, random must land near the chance level the
task itself reports.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vlbench.data import Precision, SplitBatcher
from vlbench.types.datasets import Dataset, Split
from vlbench.types.encoders import EncoderOutput, TextInfo, TokenizedText, VisionInfo
from vlbench.types.metrics import Metrics
from vlbench.types.specs import DatasetSpec, FusionSpec, TaskSpec, TextEncoderSpec, VisionEncoderSpec
from vlbench.types.tasks import fusion_inputs

CPU = Precision(torch.device("cpu"), None, False)


def _check_output(out: Any, batch: int, token_dim: int, pooled_dim: int, who: str) -> None:
    assert isinstance(out, EncoderOutput), f"{who}: forward returned {type(out).__name__}, not EncoderOutput"
    assert out.tokens.ndim == 3 and out.tokens.shape[0] == batch and out.tokens.shape[2] == token_dim, (
        f"{who}: tokens {tuple(out.tokens.shape)}, expected [{batch}, N, {token_dim}]"
    )
    assert tuple(out.pooled.shape) == (batch, pooled_dim), (
        f"{who}: pooled {tuple(out.pooled.shape)}, expected [{batch}, {pooled_dim}]"
    )
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all(), f"{who}: non-finite output"
    if out.mask is not None:
        assert tuple(out.mask.shape) == tuple(out.tokens.shape[:2]) and out.mask.dtype == torch.bool, f"{who}: bad mask"


def check_vision_encoder(spec: VisionEncoderSpec, image_size: tuple[int, int] | None = None, **options: Any) -> None:
    """Shapes follow ``info``, outputs are finite, and a sample's output does not depend on
    the rest of its batch (eval mode)."""
    size = image_size or spec.default_image_size
    encoder = spec.factory(image_size=size, pretrained=False, weights=None, **options).eval()
    info = encoder.info
    assert isinstance(info, VisionInfo), f"{spec.name}: info is not a VisionInfo"
    assert tuple(info.input_size) == tuple(size), f"{spec.name}: info.input_size {info.input_size} != requested {size}"
    torch.manual_seed(0)
    images = torch.randn(3, 3, *size)
    with torch.inference_mode():
        out = encoder(images)
        _check_output(out, 3, info.token_dim, info.pooled_dim, spec.name)
        if info.grid_size is not None:
            h, w = info.grid_size
            assert out.tokens.shape[1] == info.num_prefix_tokens + h * w, f"{spec.name}: token count != prefix + grid"
        single = encoder(images[1:2])
    assert torch.allclose(single.pooled, out.pooled[1:2], atol=1e-4, rtol=1e-3), f"{spec.name}: output depends on the batch"


def check_text_encoder(spec: TextEncoderSpec, **options: Any) -> None:
    """Tokenizer pads to max_length with a mask, outputs are finite, and the pooled output
    ignores whatever sits in padded positions."""
    encoder = spec.factory(pretrained=spec.pretrained_by_default, weights=None, **options).eval()
    info = encoder.info
    assert isinstance(info, TextInfo), f"{spec.name}: info is not a TextInfo"
    texts = ["a woman in a red jacket", "a man wearing black trousers, white shoes and a blue backpack"]
    tokens = encoder.tokenize(texts)
    assert isinstance(tokens, TokenizedText), f"{spec.name}: tokenize returned {type(tokens).__name__}"
    assert tuple(tokens.input_ids.shape) == (2, info.max_length), f"{spec.name}: input_ids {tuple(tokens.input_ids.shape)}"
    assert tokens.attention_mask.dtype == torch.bool, f"{spec.name}: attention_mask must be bool"
    real = tokens.attention_mask.sum(1)
    assert real[0] < real[1] < info.max_length + 1, f"{spec.name}: the mask does not mark real tokens"
    with torch.inference_mode():
        out = encoder(tokens)
        _check_output(out, 2, info.token_dim, info.pooled_dim, spec.name)
        garbage = tokens.input_ids.clone()
        garbage[~tokens.attention_mask] = torch.randint(1, 1000, (int((~tokens.attention_mask).sum()),))
        scrambled = encoder(TokenizedText(garbage, tokens.attention_mask))
    assert torch.allclose(out.pooled, scrambled.pooled, atol=1e-4), f"{spec.name}: padding changes the pooled output"


def check_fusion(
    spec: FusionSpec,
    num_classes: int = 5,
    *,
    objectives: Mapping[str, Any] | None = None,
    only: str | None = None,
    kinds: Mapping[str, Any] | None = None,
    **options: Any,
) -> None:
    """Every declared objective's methods give the right shapes, finite values and gradients.

    Each objective's own check runs (``ObjectiveSpec.check_fusion``); ``objectives`` maps names
    to specs (``PluginHost.objectives``), the built-ins when not given; ``only`` checks one.
    ``kinds`` (``PluginHost.kinds``) gives the small components of the kinds the fusion needs
    (``FusionSpec.needs``: each kind's ``contract_component``).
    """
    from vlbench import objectives as builtin

    needed = {}
    for kind in sorted(getattr(spec, "needs", ())):
        maker = getattr((kinds or {}).get(kind), "contract_component", None)
        assert maker is not None, (
            f"{spec.name}: needs a {kind!r} component; pass kinds=PluginHost.kinds (its kind's contract_component)"
        )
        needed[kind] = maker()
    registered = objectives if objectives is not None else builtin.BUILTIN
    unknown = sorted(set(spec.objectives) - set(registered))
    assert not unknown, f"{spec.name}: declares unregistered objectives {unknown}"
    vision = VisionInfo(token_dim=48, pooled_dim=64, input_size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, grid_size=(2, 2))
    text = TextInfo(token_dim=40, pooled_dim=40, max_length=6) if spec.uses_text else None
    inputs: dict[str, Any] = {}
    for name in sorted(spec.objectives):
        inputs |= registered[name].contract_inputs
    options = {**spec.options, **options}  # resolved as a suite resolves them: defaults filled in
    fusion = spec.factory(vision=vision, text=text, num_classes=num_classes, **needed, **inputs, **options)
    assert isinstance(fusion, nn.Module), f"{spec.name}: the factory must return an nn.Module"
    assert only is None or only in spec.objectives, f"{spec.name}: does not declare {only!r}"
    for name in sorted(spec.objectives) if only is None else [only]:
        torch.manual_seed(0)
        image = EncoderOutput(torch.randn(4, 4, 48, requires_grad=True), torch.randn(4, 64, requires_grad=True))
        mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3] * 2)
        words = EncoderOutput(torch.randn(4, 6, 40), torch.randn(4, 40), mask) if text else None
        registered[name].check_fusion(fusion, image, words, num_classes, f"{spec.name} ({name})")
        assert image.pooled.grad is not None or image.tokens.grad is not None, (
            f"{spec.name} ({name}): no gradient reaches the image encoder"
        )


# ---------------------------------------------------------------- tasks


CODED_CLASSES = 4


def coded_split(n_images: int = 60, per_identity: int = 3, num_classes: int = CODED_CLASSES, seed: int = 0) -> Split:
    """Images whose pixels hold their index; captions that name it; identities and labels."""
    rng = np.random.default_rng(seed)
    labels = [
        tuple(int(c) for c in np.flatnonzero(rng.random(num_classes) < 0.4)) or (int(rng.integers(num_classes)),)
        for _ in range(n_images)
    ]
    return Split(
        name="test",
        ids=[f"img{i}" for i in range(n_images)],
        load_image=lambda i: np.full((8, 8, 3), i, dtype=np.uint8),
        captions=[(f"sample {i}", f"sample {i}") for i in range(n_images)],
        identities=[i // per_identity for i in range(n_images)],
        labels=labels,
    )


def _coded_tokenize(texts: Sequence[str]) -> TokenizedText:
    ids = torch.tensor([[int(t.split()[-1])] for t in texts])
    return TokenizedText(ids, torch.ones_like(ids, dtype=torch.bool))


class WordList:
    """A minimal tokenizer of the generation protocol (whitespace words): PAD 0, BOS 1, EOS 2,
    UNK 3, then ``words`` in order. For coded captions: ``WordList(["sample", "0", "1", ...])``."""

    pad_id, bos_id, eos_id, unk_id = 0, 1, 2, 3

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        self.ids = {word: 4 + i for i, word in enumerate(self.words)}

    def __len__(self) -> int:
        return 4 + len(self.words)

    def encode(self, texts: Sequence[str], max_length: int) -> torch.Tensor:
        out = torch.full((len(texts), max_length), self.pad_id, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.bos_id, *(self.ids.get(w, self.unk_id) for w in text.lower().split())][: max_length - 1] + [self.eos_id]
            out[row, : len(ids)] = torch.tensor(ids)
        return out

    def decode(self, ids: torch.Tensor) -> list[str]:
        texts = []
        for row in ids.tolist():
            words = []
            for i in row:
                if i == self.eos_id:
                    break
                if i >= 4:
                    words.append(self.words[i - 4])
            texts.append(" ".join(words))
        return texts


MATCH_KEYS = ("identity", "image", "class")


class _CodedModel(nn.Module):
    """Reads sample indices back from coded images/captions; oracle or random outputs.

    The oracle's embeddings are one-hot in the task's match key: an image and a caption
    embed alike when they share an identity, are the same image, or share a first class.
    """

    def __init__(self, split: Split, num_classes: int, oracle: bool, seed: int = 0, match_key: str = "identity"):
        super().__init__()
        if match_key not in MATCH_KEYS:
            raise ValueError(f"match_key must be one of {MATCH_KEYS}, got {match_key!r}")
        self.oracle = oracle
        assert split.labels is not None and split.identities is not None, "a coded split has identities and labels"
        keys = {"identity": split.identities, "image": range(len(split)), "class": [labels[0] for labels in split.labels]}
        self.identity = torch.tensor(list(keys[match_key]))
        self.labels = torch.zeros(len(split), num_classes)
        for i, labels in enumerate(split.labels):
            self.labels[i, list(labels)] = 1.0
        self.generator = torch.Generator().manual_seed(seed)
        self.dim = int(self.identity.max()) + 1
        self.vocab = WordList(["sample", *map(str, range(len(split)))])

    def _index(self, images: torch.Tensor) -> torch.Tensor:
        return (images[:, 0, 0, 0] * 255).round().long()

    def _embed(self, index: torch.Tensor) -> torch.Tensor:
        if self.oracle:
            return nn.functional.one_hot(self.identity[index], self.dim).float()
        return nn.functional.normalize(torch.randn(len(index), 16, generator=self.generator), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self._embed(self._index(images))

    def encode_text(self, text: TokenizedText) -> torch.Tensor:
        return self._embed(text.input_ids[:, 0])

    def logit_scale(self) -> torch.Tensor:
        return torch.tensor(10.0)

    def classify(self, images: torch.Tensor, text: TokenizedText | None) -> torch.Tensor:
        index = self._index(images)
        if self.oracle:
            return self.labels[index] * 20 - 10
        return torch.randn(len(index), self.labels.shape[1], generator=self.generator)

    # generation: the oracle writes "sample <index>", the random model random words
    caption_vocab = property(lambda self: self.vocab)
    caption_max_length = 4

    def caption_logits(self, images: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        state = self.prefill(images)
        return torch.stack([self.decode_step(state, input_ids[:, : t + 1]) for t in range(input_ids.shape[1])], dim=1)

    def prefill(self, images: torch.Tensor) -> tuple[torch.Tensor]:
        return (self._index(images),)

    def decode_step(self, state: tuple[torch.Tensor], input_ids: torch.Tensor) -> torch.Tensor:
        (index,) = state
        if not self.oracle:
            return torch.log_softmax(torch.randn(len(index), len(self.vocab), generator=self.generator), -1)
        truth = self.vocab.encode([f"sample {i}" for i in index.tolist()], 4)
        position = min(input_ids.shape[1], truth.shape[1] - 1)
        return torch.log(nn.functional.one_hot(truth[:, position], len(self.vocab)).float().clamp_min(1e-9))


def evaluate_coded(
    spec: TaskSpec, oracle: bool, seed: int = 0, match_key: str | None = None, n_images: int = 60, **options: Any
) -> Metrics:
    """The task's metrics of the oracle or a random model on a :func:`coded_split` of ``n_images``.

    ``match_key``: what the task's captions match (see :func:`task_match_key`)."""
    task = spec.factory(**options)
    split = coded_split(n_images=n_images, seed=seed)
    assert split.labels is not None, "a coded split labels every image"
    num_classes = max(CODED_CLASSES, max(max(labels) for labels in split.labels) + 1)
    info = VisionInfo(token_dim=1, pooled_dim=1, input_size=(8, 8), mean=(0.0,) * 3, std=(1.0,) * 3)
    loader = SplitBatcher(info, _coded_tokenize, CPU, batch_size=16, num_classes=num_classes)
    model = _CodedModel(split, num_classes, oracle, seed, match_key or task_match_key(task)).eval()
    # What the engine calls before building the model (train captions, ...).
    fusion_inputs(task, Dataset(name="coded", splits={"train": coded_split(seed=seed + 1), "val": split, "test": split}))
    return task.evaluate(model, split, loader)


def task_match_key(task: Any) -> str:
    """What a task's captions match, for the oracle: the optional ``match_key`` attribute of
    the task ("identity", the default; "image": a caption matches only its own image;
    "class": images sharing a class)."""
    return getattr(task, "match_key", "identity")


def check_task(spec: TaskSpec, best: float = 100.0, match_key: str | None = None, **options: Any) -> None:
    """An oracle reaches ``best`` on the main metric; random outputs land near chance; a split
    of 4 images (fewer than any K of R@K) still gives finite numbers and the oracle's best; the
    per-unit scores, when given, bootstrap into an interval of the main metric (no per-unit
    scores: ``Metrics.no_interval`` must say why).

    ``match_key`` overrides the task's own ``match_key`` attribute (default "identity").

    A cost-only task (``measures_quality=False``) has no metric: it must build and serve its
    declared objective, and nothing more is checked here.
    """
    if not spec.measures_quality:
        task = spec.factory(**options)
        assert task.objective == spec.objective, f"{spec.name}: task objective {task.objective!r} vs spec {spec.objective!r}"
        return
    from vlbench.bootstrap import intervals

    oracle = evaluate_coded(spec, oracle=True, match_key=match_key, **options)
    randoms = [evaluate_coded(spec, oracle=False, seed=s, match_key=match_key, **options) for s in range(5)]
    main = oracle.main
    assert main in oracle.values, f"{spec.name}: main metric {main!r} has no value"
    if oracle.per_unit is not None:  # without them the engine records "no per-unit scores" in place of an interval
        ci, how = intervals(oracle, seed=0, n_resamples=50)
        assert main in ci, f"{spec.name}: per_unit scores give no interval for the main metric {main!r} ({how})"
    if main not in oracle.chance:  # no chance level (BLEU, CIDEr): the oracle beats every baseline, random beats none
        baselines = {name: values[main] for name, values in oracle.baselines.items() if main in values}
        assert baselines, f"{spec.name}: main metric {main!r} has neither a chance level nor a baseline"
        sign = 1 if spec.higher_is_better else -1
        assert all(sign * (oracle.values[main] - v) > 0 for v in baselines.values()), (
            f"{spec.name}: the oracle's {main} {oracle.values[main]:.2f} does not beat the baselines {baselines}"
        )
        assert all(sign * (m.values[main] - oracle.values[main]) < 0 for m in randoms), (
            f"{spec.name}: a random model ties the oracle"
        )
        return
    assert math.isclose(oracle.values[main], best, abs_tol=1e-6), (
        f"{spec.name}: oracle scores {oracle.values[main]} on {main}, expected {best} "
        f"(matching on {match_key or task_match_key(spec.factory(**options))}; set the task's match_key if its captions match something else)"
    )
    tiny = evaluate_coded(spec, oracle=True, match_key=match_key, n_images=4, **options)
    assert all(math.isfinite(v) for v in tiny.values.values()), (
        f"{spec.name}: non-finite metrics on a 4-image split: {tiny.values}"
    )
    assert math.isclose(tiny.values[tiny.main], best, abs_tol=1e-6), (
        f"{spec.name}: on a 4-image split (K beyond the split) the oracle scores {tiny.values[tiny.main]}, expected {best}"
    )
    mean = sum(m.values[m.main] for m in randoms) / len(randoms)
    chance = randoms[0].chance[randoms[0].main]
    assert abs(mean - chance) <= max(5.0, 0.35 * chance), (
        f"{spec.name}: random scores {mean:.2f} on average, chance is {chance:.2f}"
    )


# ---------------------------------------------------------------- datasets


def check_dataset(spec: DatasetSpec, cache_dir: Path, seed: int = 0, **options: Any) -> None:
    """Train, val and test splits with every declared field, HWC uint8 RGB images, ids unique
    across the dataset, and the same samples again for the same seed (built in a second cache
    directory, so a cached copy cannot hide a non-deterministic generator)."""
    dataset = spec.factory(cache_dir=Path(cache_dir) / "first", seed=seed, **options)
    assert isinstance(dataset, Dataset), f"{spec.name}: the factory returned {type(dataset).__name__}, not a Dataset"
    missing = {"train", "val", "test"} - set(dataset.splits)
    assert not missing, f"{spec.name}: splits {sorted(missing)} missing"
    columns = {"captions": "captions", "identity": "identities", "labels": "labels"}
    ids: list[str] = []
    for name in ("train", "val", "test"):
        split = dataset.splits[name]
        assert len(split) > 0, f"{spec.name}: split {name!r} is empty"
        for field_name, column in columns.items():
            if field_name in spec.provides:
                values = getattr(split, column)
                assert values is not None and len(values) == len(split), (
                    f"{spec.name}: {name}.{column} missing or not one per image"
                )
        if "captions" in spec.provides:
            assert split.captions is not None, f"{spec.name}: {name} provides captions but has none"
            assert all(caps and all(isinstance(c, str) and c for c in caps) for caps in split.captions), (
                f"{spec.name}: {name} has an image without captions or an empty caption"
            )
        if "labels" in spec.provides:
            classes = len(dataset.class_names)
            assert classes, f"{spec.name}: labelled datasets must name their classes (Dataset.class_names)"
            assert split.labels is not None, f"{spec.name}: {name} provides labels but has none"
            assert all(0 <= c < classes for labels in split.labels for c in labels), (
                f"{spec.name}: {name} has a label outside 0..{classes - 1}"
            )
        for index in (0, len(split) - 1):
            image = split.load_image(index)
            assert isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, (
                f"{spec.name}: {name}.load_image({index}) must return an HWC uint8 RGB array, got "
                f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
            )
        ids += list(split.ids)
    assert len(set(ids)) == len(ids), f"{spec.name}: sample ids repeat across the dataset"
    again = spec.factory(cache_dir=Path(cache_dir) / "again", seed=seed, **options)
    for name in ("train", "val", "test"):
        first, second = dataset.splits[name], again.splits[name]
        assert list(first.ids) == list(second.ids), f"{spec.name}: the same seed gave different {name} ids"
        assert first.captions == second.captions, f"{spec.name}: the same seed gave different {name} captions"
        assert np.array_equal(first.load_image(0), second.load_image(0)), (
            f"{spec.name}: the same seed gave a different first {name} image"
        )
