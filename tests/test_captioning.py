"""Captioning end to end: the generation objective, cross_attention_decoder, the captioning task,
its suites, its bad inputs, and the conformance kit on a third-party generation fusion and task."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vlbench.errors import SuiteError, UserError
from vlbench.objectives.generation import teacher_forced_loss
from vlbench.results import reference
from vlbench.suite import load_suite
from vlbench.testing import mocks
from vlbench.testing.contracts import check_fusion, check_task
from vlbench.types import Dataset, Split

ROOT = Path(__file__).resolve().parents[1]
TINY_DECODER = {"d_model": 32, "layers": 1, "heads": 2, "ff_dim": 64, "dropout": 0.0, "max_length": 12}

SUITE = """
[suite]
name = "cap"
device = "cpu"
[train]
epochs = 1
batch_size = 16
max_steps_per_epoch = 2
eval_batch_size = 64
cost_batch_sizes = [1, 2]
cost_budget_s = 0.01
[[tasks]]
name = "captioning"
dataset_options = { n_images = [40, 12, 12], image_size = [32, 32] }
options = { decoding = "beam", beam_size = 2, bootstrap = 50, examples = 3 }
[[vision]]
name = "mock_vision"
[[fusions]]
name = "cross_attention_decoder"
options = { FUSION }
"""


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write(tmp_path: Path, fusion: str, text: str = SUITE) -> Path:
    path = tmp_path / "cap.toml"
    path.write_text(text.replace("FUSION", fusion))
    return path


def options(**changes) -> str:
    return ", ".join(f"{k} = {v!r}".replace("'", '"') for k, v in {**TINY_DECODER, **changes}.items())


def test_shipped_captioning_suites(mock_host):
    pruning = load_suite(ROOT / "suites" / "captioning_pruning.toml", mock_host).runs
    assert len(pruning) == 8
    assert sorted({r.choice("vision").name for r in pruning}) == ["convnext_tiny", "vit_small_patch16_224"]
    assert sorted({r.choice("fusion").options["keep_ratio"] for r in pruning}) == [0.3, 0.5, 0.7, 1.0]
    quick = load_suite(ROOT / "suites" / "quickstart_captioning.toml", mock_host)
    assert quick.device == "cpu" and any(r.choice("fusion").options["keep_ratio"] < 1 for r in quick.runs)


def test_a_captioning_run_records_scores_baselines_examples_pruning_and_generation_cost(tmp_path, mock_host):
    from vlbench.engine import run_suite
    from vlbench.results import read_record

    runs = load_suite(write(tmp_path, options(keep_ratio=0.5)), mock_host).runs
    outcome = run_suite(runs, mock_host, tmp_path / "results", tmp_path / "cache", torch.device("cpu"), warn=lambda _: None)
    record = read_record(outcome.records[0])
    assert record["status"] == "ok", record["error"]
    test = record["metrics"]["splits"]["test"]
    assert test["main"] == "CIDEr-D" and {"BLEU-1", "BLEU-4", "CIDEr-D", "token_accuracy"} <= set(test["values"])
    assert set(test["baselines"]) == {"most frequent train caption", "nearest train caption (pixels)"}
    assert test["chance"] == {} and reference(test, "CIDEr-D")[0].startswith("baseline: ")
    low, high = test["ci95"]["CIDEr-D"]
    assert low <= test["values"]["CIDEr-D"] <= high
    assert [e["image"] for e in test["details"]["examples"]] == ["test/000000", "test/000001", "test/000002"]
    # mock_vision at 32x32 with patch 8: a 4x4 grid, half of it kept
    assert test["details"]["pruning"] == {
        "rule": "l2",
        "keep_ratio": 0.5,
        "prune_ratio": 0.5,
        "spatial_tokens": 16,
        "kept_tokens": 8,
        "prefix_tokens_kept": 0,
    }
    generation = record["cost"]["generation"]
    assert (
        generation["memory_tokens"] == 8 and generation["decode_step_macs"]["last"] > generation["decode_step_macs"]["first"] > 0
    )
    assert [b["batch"] for b in generation["batches"]] == [1, 2] and all(b["tokens_per_s"] > 0 for b in generation["batches"])
    assert generation["largest_train_batch"]["measured"] is False  # CPU
    assert set(record["cost"]["flops"]["components"]) == {"vision", "fusion"} and record["config"]["text"] is None


def test_pruning_shrinks_the_decode_step(tmp_path, mock_host):
    from vlbench.build import build
    from vlbench.objectives.generation import GENERATION

    macs = {}
    for ratio in (1.0, 0.25):
        (run,) = load_suite(write(tmp_path, options(keep_ratio=ratio)), mock_host).runs
        built = build(run, mock_host, tmp_path / "cache", torch.device("cpu"))
        from vlbench.data import Precision

        cost = GENERATION.extra_cost(built.model.eval(), Precision(torch.device("cpu"), None, False), (32, 32), [1], 0.01)
        macs[ratio] = (cost["memory_tokens"], cost["decode_step_macs"]["last"])
    assert macs[1.0][0] == 16 and macs[0.25][0] == 4 and macs[0.25][1] < macs[1.0][1]


def test_targets_are_the_decoders_ids_and_pad_is_masked():
    vocab = mocks.WordList(["a", "red", "square"])
    ids = vocab.encode(["a red square", "a"], 6)
    assert ids.tolist() == [[1, 4, 5, 6, 2, 0], [1, 4, 2, 0, 0, 0]]  # BOS ... EOS PAD
    logits = torch.randn(2, 6, len(vocab))
    changed = logits.clone()
    changed[1, 2:] = torch.randn(4, len(vocab))  # positions whose targets are PAD
    assert torch.allclose(teacher_forced_loss(logits, ids, 0), teacher_forced_loss(changed, ids, 0))


@pytest.mark.parametrize(
    ("fusion", "message"),
    [
        (options(keep_ratio=0.0), r"keep_ratio must be in \(0, 1\]"),
        (options(keep_ratio=1.5), r"keep_ratio must be in \(0, 1\]"),
        (options(heads=3), r"heads \(3\) must divide d_model \(32\)"),
        (options(prune_rule="norm"), r"prune_rule must be one of"),
    ],
)
def test_decoder_options_out_of_range_are_refused_at_load(tmp_path, fusion, message, mock_host):
    with pytest.raises(SuiteError, match=rf"cap.toml: fusions\[0\]\.options: 'cross_attention_decoder': {message}"):
        load_suite(write(tmp_path, fusion), mock_host)


def test_objective_mismatch_is_refused_at_load(tmp_path, mock_host):
    text = SUITE.replace('name = "cross_attention_decoder"', 'name = "mock_fusion"').replace("options = { FUSION }", "")
    text += '[[text]]\nname = "mock_text"\n'
    with pytest.raises(
        SuiteError,
        match=r"fusion 'mock_fusion' provides \['classification', 'embedding'\] but task 'captioning' "
        r"needs the 'generation' objective\. Fusions that can serve it: .*cross_attention_decoder",
    ):
        load_suite(write(tmp_path, "", text), mock_host)


def test_bad_input_exits_2_before_anything_is_written(tmp_path):
    path = write(tmp_path, options(keep_ratio=0.0), SUITE.replace('"mock_vision"', '"convnext_atto"'))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlbench.cli",
            "run",
            str(path),
            "--results-dir",
            str(tmp_path / "results"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--runs-dir",
            "",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and "keep_ratio must be in (0, 1]" in out.stderr + out.stdout and "Traceback" not in out.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


def test_an_image_without_captions_is_refused(mock_host):
    task = mock_host.get("task", "captioning").factory()
    split = Split(name="train", ids=["a", "b"], load_image=lambda i: None, captions=[("a red square",), ("  ",)])
    with pytest.raises(UserError, match="image 'b' has no caption"):
        task.fusion_inputs(Dataset(name="d", splits={"train": split, "val": split, "test": split}))


def test_kit_checks_a_third_party_generation_fusion_and_task(tmp_path, mock_host):
    """mock_decoder and mock_captioning stand in for a plugin's: the kit's contracts and a tiny real run."""
    check_fusion(mock_host.get("fusion", "mock_decoder"), objectives=mock_host.objectives)
    check_task(mock_host.get("task", "mock_captioning"))
    check_task(mock_host.get("task", "captioning"), bootstrap=20)  # the oracle beats both baselines, random does not
    record = mocks.tiny_run(mock_host, tmp_path, text=None, fusion="mock_decoder", task="mock_captioning")
    assert record["status"] == "ok", mocks.describe_failure(record)
    assert record["metrics"]["splits"]["test"]["baselines"]["most frequent train caption"]["exact"] >= 0
    broken = type("Broken", (mocks.MockDecoder,), {"caption_logits": lambda self, state, ids: torch.zeros(len(ids), 2)})
    from dataclasses import replace

    with pytest.raises(AssertionError, match="caption logits"):
        check_fusion(replace(mock_host.get("fusion", "mock_decoder"), factory=broken), objectives=mock_host.objectives)
