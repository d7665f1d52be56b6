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

The components and models are defined in :mod:`vlbench.testing.mock_models`, the tasks in
:mod:`vlbench.testing.mock_tasks` and :func:`tiny_run` in :mod:`vlbench.testing.tiny_suite`;
all are importable from here.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from vlbench import hookimpl
from vlbench.testing.contracts import CODED_CLASSES, WordList, coded_split
from vlbench.testing.mock_models import MockDecoder, MockFusion, MockTextEncoder, MockVisionEncoder, oracle_model, random_model
from vlbench.testing.mock_tasks import MockCaptioningTask, MockClassificationTask, MockRetrievalTask
from vlbench.testing.tiny_suite import MOCK_FUSION, describe_failure, mock_task_for, mock_tasks_for_fusion, tiny_run
from vlbench.types.datasets import Dataset
from vlbench.types.specs import DatasetSpec, FusionSpec, Register, TaskSpec, TextEncoderSpec, VisionEncoderSpec

# Importable from here as the kit's documentation promises (docs/writing-plugins.md).
__all__ = [
    "CODED_CLASSES",
    "MOCK_FUSION",
    "PLUGIN_NAME",
    "MockCaptioningTask",
    "MockClassificationTask",
    "MockDecoder",
    "MockFusion",
    "MockRetrievalTask",
    "MockTextEncoder",
    "MockVisionEncoder",
    "WordList",
    "coded_split",
    "describe_failure",
    "mock_dataset",
    "mock_task_for",
    "mock_tasks_for_fusion",
    "oracle_model",
    "random_model",
    "tiny_run",
]

PLUGIN_NAME = "vlbench.testing.mocks"


# ---------------------------------------------------------------- dataset


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
    for name, factory, description, objective in (
        ("mock_retrieval", MockRetrievalTask, "caption -> image R@1 (testing)", "embedding"),
        ("mock_classification", MockClassificationTask, "top-1 label accuracy (testing)", "classification"),
        ("mock_captioning", MockCaptioningTask, "greedy captions, exact match (testing)", "generation"),
    ):
        register(
            TaskSpec(
                name=name,
                factory=factory,
                description=description,
                objective=objective,
                required_fields=factory.required_fields,
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
