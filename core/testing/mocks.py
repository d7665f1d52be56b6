"""Mocks for testing plugins: cheap random components, a tiny coded dataset, and ``tiny_run``.

Register this module as a plugin (``PluginHost(extra_plugins=[(PLUGIN_NAME, mocks)])``; the
``vlbench_host`` fixture of the pytest plugin does) to get these components:

============================ ======================================================
``mock_vision``              random-init patch embedding (any image size >= 8)
``mock_text``                hashed-word embedding with a masked-mean pooled output
``mock_fusion``              pooled projections: embedding and classification
``mock_retrieval``           caption -> image R@1 matched on identity (embedding)
``mock_classification``      top-1 accuracy of multi-label logits (classification)
``mock_decoder``             image-conditioned word predictor with its own vocabulary (generation)
``mock_captioning``          greedy captions, exact-match % against a baseline (generation)
``mock_dataset``             coded images, captions, identities and labels (60 per split)
============================ ======================================================

With them, :func:`tiny_run` runs the *real* engine (suite validation, build, first-batch
contract check, training, selection, evaluation, record) around the one component under test,
in a second or two on a CPU. The oracle and random models of the task contract are
:func:`oracle_model` and :func:`random_model`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from vlbench import hookimpl
from vlbench.testing.contracts import CODED_CLASSES, WordList, _CodedModel, coded_split
from vlbench.testing.mock_tasks import MockCaptioningTask, MockClassificationTask, MockRetrievalTask
from vlbench.types import (
    Dataset,
    DatasetSpec,
    EncoderOutput,
    FusionSpec,
    Register,
    Split,
    TaskSpec,
    TextEncoder,
    TextEncoderSpec,
    TextInfo,
    TokenizedText,
    VisionEncoder,
    VisionEncoderSpec,
    VisionInfo,
)

if TYPE_CHECKING:
    from vlbench.manager import PluginHost

PLUGIN_NAME = "vlbench.testing.mocks"


# ---------------------------------------------------------------- models for the task contract


def oracle_model(split: Split, num_classes: int = CODED_CLASSES) -> nn.Module:
    """Reads the truth back from :func:`~vlbench.testing.contracts.coded_split` data: a task's
    best score. Offers every objective's methods (``encode_image``, ``classify``, ...)."""
    return _CodedModel(split, num_classes, oracle=True).eval()


def random_model(split: Split, num_classes: int = CODED_CLASSES, seed: int = 0) -> nn.Module:
    """Random embeddings and logits on coded data: should score the task's chance level."""
    return _CodedModel(split, num_classes, oracle=False, seed=seed).eval()


# ---------------------------------------------------------------- encoders


class MockVisionEncoder(VisionEncoder):
    """One strided convolution: ``patch x patch`` patches -> ``dim``-wide tokens, mean-pooled."""

    def __init__(
        self, image_size: Sequence[int], pretrained: bool = False, weights: str | None = None, dim: int = 16, patch: int = 8
    ):
        super().__init__()
        if pretrained or weights:
            raise ValueError("mock_vision has no weights: it is random-init only")
        h, w = image_size
        self.embed = nn.Conv2d(3, dim, patch, stride=patch)
        self.info = VisionInfo(
            token_dim=dim, pooled_dim=dim, input_size=(h, w), mean=(0.5,) * 3, std=(0.5,) * 3, grid_size=(h // patch, w // patch)
        )

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        tokens = self.embed(images).flatten(2).transpose(1, 2)
        return EncoderOutput(tokens=tokens, pooled=tokens.mean(1))


class MockTextEncoder(TextEncoder):
    """Words hashed into ``vocab`` ids (0 is padding); pooled = mean over real tokens."""

    def __init__(
        self, pretrained: bool = False, weights: str | None = None, dim: int = 16, vocab: int = 1000, max_length: int = 16
    ):
        super().__init__()
        if pretrained or weights:
            raise ValueError("mock_text has no weights: it is random-init only")
        self.vocab = vocab
        self.embed = nn.Embedding(vocab + 1, dim)
        self.info = TextInfo(token_dim=dim, pooled_dim=dim, max_length=max_length)

    def tokenize(self, texts: Sequence[str]) -> TokenizedText:
        length = self.info.max_length
        ids = torch.zeros(len(texts), length, dtype=torch.int64)
        for row, text in enumerate(texts):
            # crc32, not hash(): the same word gets the same id in every process
            words = [zlib.crc32(word.encode()) % self.vocab + 1 for word in text.lower().split()[:length]]
            ids[row, : len(words)] = torch.tensor(words, dtype=torch.int64)
        return TokenizedText(ids, ids > 0)

    def forward(self, text: TokenizedText) -> EncoderOutput:
        tokens = self.embed(text.input_ids)
        weights = text.attention_mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return EncoderOutput(tokens=tokens, pooled=pooled, mask=text.attention_mask)


# ---------------------------------------------------------------- fusion


class MockFusion(nn.Module):
    """Linear maps of the pooled outputs: unit embeddings, and logits summed over both towers."""

    def __init__(self, vision: VisionInfo, text: TextInfo | None, num_classes: int | None, embed_dim: int = 16):
        super().__init__()
        self.image_proj = nn.Linear(vision.pooled_dim, embed_dim)
        self.text_proj = nn.Linear(text.pooled_dim, embed_dim) if text is not None else None
        self.image_head = nn.Linear(vision.pooled_dim, num_classes) if num_classes else None
        self.text_head = nn.Linear(text.pooled_dim, num_classes) if num_classes and text is not None else None
        self.log_scale = nn.Parameter(torch.tensor(math.log(10.0)))

    def embed_image(self, out: EncoderOutput) -> torch.Tensor:
        return F.normalize(self.image_proj(out.pooled), dim=-1)

    def embed_text(self, out: EncoderOutput) -> torch.Tensor:
        return F.normalize(self.text_proj(out.pooled), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def forward(self, image: EncoderOutput, text: EncoderOutput | None) -> torch.Tensor:
        logits = self.image_head(image.pooled)
        return logits if text is None or self.text_head is None else logits + self.text_head(text.pooled)


class MockDecoder(nn.Module):
    """Generation protocol at its smallest: logits[:, t] = f(token t, pooled image); causal by
    construction. Its vocabulary is fitted on the train captions it is given."""

    def __init__(
        self,
        vision: VisionInfo,
        text: TextInfo | None,
        num_classes: int | None = None,
        captions: Sequence[str] = (),
        dim: int = 32,
        max_length: int = 6,
    ):
        super().__init__()
        self.vocab = WordList(sorted({w for c in captions for w in c.lower().split()}))
        self.max_length = max_length
        self.image = nn.Linear(vision.pooled_dim, dim)
        self.embed = nn.Embedding(len(self.vocab), dim)
        self.out = nn.Linear(dim, len(self.vocab))

    def prefill(self, image: EncoderOutput) -> tuple[torch.Tensor]:
        return (self.image(image.pooled),)

    def caption_logits(self, state: tuple[torch.Tensor], input_ids: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.embed(input_ids) + state[0][:, None]))

    def decode_step(self, state: tuple[torch.Tensor], input_ids: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.caption_logits(state, input_ids[:, -1:])[:, -1].float(), dim=-1)


# ---------------------------------------------------------------- tasks


def mock_dataset(cache_dir: Path, seed: int, images_per_split: int = 60) -> Dataset:
    """Three :func:`coded_split` splits (ids made unique across splits), four label classes."""
    splits = {}
    for offset, name in enumerate(("train", "val", "test")):
        split = coded_split(n_images=images_per_split, num_classes=CODED_CLASSES, seed=seed + offset)
        splits[name] = dataclasses.replace(split, name=name, ids=[f"{name}/{i}" for i in split.ids])
    return Dataset(name="mock_dataset", splits=splits, class_names=tuple(f"class{c}" for c in range(CODED_CLASSES)))


# ---------------------------------------------------------------- registration


@hookimpl
def vlbench_register_vision_encoders(register: Register) -> None:
    register(
        VisionEncoderSpec(
            name="mock_vision",
            factory=MockVisionEncoder,
            description="random patch embedding (testing)",
            options={"dim": 16, "patch": 8},
            default_image_size=(32, 32),
            family="mock",
        )
    )


@hookimpl
def vlbench_register_text_encoders(register: Register) -> None:
    register(
        TextEncoderSpec(
            name="mock_text",
            factory=MockTextEncoder,
            description="hashed-word embedding (testing)",
            options={"dim": 16, "vocab": 1000, "max_length": 16},
        )
    )


@hookimpl
def vlbench_register_fusions(register: Register) -> None:
    register(
        FusionSpec(
            name="mock_fusion",
            factory=MockFusion,
            description="pooled linear maps (testing)",
            options={"embed_dim": 16},
            objectives=frozenset({"embedding", "classification"}),
        )
    )
    register(
        FusionSpec(
            name="mock_decoder",
            factory=MockDecoder,
            description="image-conditioned word predictor (testing)",
            options={"dim": 32, "max_length": 6},
            objectives=frozenset({"generation"}),
            uses_text=False,
        )
    )


@hookimpl
def vlbench_register_tasks(register: Register) -> None:
    register(
        TaskSpec(
            name="mock_retrieval",
            factory=MockRetrievalTask,
            description="caption -> image R@1 (testing)",
            objective="embedding",
            required_fields=MockRetrievalTask.required_fields,
            default_dataset="mock_dataset",
        )
    )
    register(
        TaskSpec(
            name="mock_classification",
            factory=MockClassificationTask,
            description="top-1 label accuracy (testing)",
            objective="classification",
            required_fields=MockClassificationTask.required_fields,
            default_dataset="mock_dataset",
        )
    )
    register(
        TaskSpec(
            name="mock_captioning",
            factory=MockCaptioningTask,
            description="greedy captions, exact match (testing)",
            objective="generation",
            required_fields=MockCaptioningTask.required_fields,
            default_dataset="mock_dataset",
        )
    )


@hookimpl
def vlbench_register_datasets(register: Register) -> None:
    register(
        DatasetSpec(
            name="mock_dataset",
            factory=mock_dataset,
            description="coded images and captions (testing)",
            options={"images_per_split": 60},
            provides=frozenset({"image", "captions", "identity", "labels"}),
            synthetic=True,
        )
    )


# ---------------------------------------------------------------- tiny_run


def mock_tasks_for_fusion(spec: FusionSpec, objectives: Mapping[str, Any] | None = None) -> dict[str, str | None]:
    """Each objective the fusion declares -> the mock task that can exercise it, or None
    (``ObjectiveSpec.mock_task``; a mock task that reads captions needs a fusion with text)."""
    from vlbench import objectives as builtin

    registered = objectives if objectives is not None else builtin.BUILTIN
    out: dict[str, str | None] = {}
    for name in sorted(spec.objectives):
        objective = registered.get(name)
        usable = objective is not None and (spec.uses_text or not objective.mock_task_needs_text)
        out[name] = objective.mock_task if usable else None
    return out


# The mock fusion (and text encoder) that serves each built-in objective, for a task's end-to-end run.
MOCK_FUSION: dict[str, tuple[str, str | None]] = {
    "embedding": ("mock_fusion", "mock_text"),
    "classification": ("mock_fusion", "mock_text"),
    "generation": ("mock_decoder", None),
}


def mock_task_for(spec: DatasetSpec) -> str | None:
    """The mock task that can run on a dataset providing ``spec.provides``, if any."""
    for name, task in (("mock_retrieval", MockRetrievalTask), ("mock_classification", MockClassificationTask)):
        if task.required_fields <= spec.provides:
            return name
    return None


def _toml(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)  # bools, numbers and strings are spelled alike in JSON and TOML


def tiny_run(
    host: PluginHost,
    workdir: Path,
    *,
    vision: str = "mock_vision",
    text: str | None = "mock_text",
    fusion: str | None = "mock_fusion",
    task: str = "mock_retrieval",
    dataset: str = "mock_dataset",
    image_size: Sequence[int] | None = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    steps: int = 2,
) -> dict[str, Any]:
    """Run one tiny suite through the real engine and return its record (status ok or error).

    ``text=None`` runs without a text encoder (for fusions with ``uses_text=False``); ``options``
    maps a kind (vision, text, fusion, task, dataset) to that component's options. Two epochs of
    ``steps`` steps, so selection on val, reloading the best state and testing all happen.
    """
    from vlbench.engine import run_suite
    from vlbench.results import read_record, record_path
    from vlbench.suite import load_suite

    options = options or {}
    vision_entry = {"name": vision, "options": options.get("vision", {})}
    if image_size is not None:
        vision_entry["image_size"] = list(image_size)
    axes = {
        "vision": vision_entry,
        "text": {"name": text, "options": options.get("text", {})} if text else None,
        "fusions": {"name": fusion, "options": options.get("fusion", {})} if fusion else None,
        "tasks": {
            "name": task,
            "options": options.get("task", {}),
            "dataset_options": options.get("dataset", {}),
            "dataset": dataset,
        },
    }
    # Cost is measured as in every run, on a token budget: its figures are not what is tested here.
    train = {
        "epochs": 2,
        "batch_size": 8,
        "max_steps_per_epoch": steps,
        "eval_batch_size": 32,
        "lr": 1e-3,
        "hflip": False,
        "cost_batch_sizes": [1, 2],
        "cost_budget_s": 0.01,
    }
    lines = ["[suite]", 'name = "tiny"', "[train]", *(f"{key} = {_toml(value)}" for key, value in train.items())]
    for axis, entry in axes.items():
        if entry is not None:
            lines += [f"[[{axis}]]"] + [f"{key} = {_toml(value)}" for key, value in entry.items()]
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "tiny.toml"
    path.write_text("\n".join(lines) + "\n")
    suite = load_suite(path, host)
    (run,) = suite.runs
    run_suite(suite.runs, host, workdir / "results", workdir / "cache", torch.device("cpu"), warn=lambda _: None)
    return read_record(record_path(workdir / "results", run.suite, run.run_id))


def describe_failure(record: Mapping[str, Any]) -> str:
    """One message for an error record: its error and the traceback that raised it."""
    error = record["error"]
    return f"{record['label']} failed: {error['type']}: {error['message']}\n{error.get('traceback', '')}"
