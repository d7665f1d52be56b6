"""The embedding cache of frozen towers: after the first run a frozen text tower computes
nothing, metrics equal an uncached suite's, keys separate what must not be shared, and
`vlbench cache info|clear` and an unwritable cache folder behave."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from vlbench import cli, embedding_cache
from vlbench.engine import run_suite
from vlbench.plugins.text.clip_text import ClipTextEncoder
from vlbench.results import read_record
from vlbench.suite import load_suite
from vlbench.testing.counting import counting_forward_passes
from vlbench.types import ComponentChoice

SUITE = """
[suite]
name = "cached"

[train]
epochs = 2
batch_size = 16
max_steps_per_epoch = 2
eval_batch_size = 32
cost_batch_sizes = [1]
cost_budget_s = 0.05

[defaults.vision]
image_size = [64, 32]

[[tasks]]
name = "person_search"
options = { bootstrap = 0 }
dataset_options = { identities = [8, 4, 4], views_per_identity = 2, image_size = [64, 32] }

[[vision]]
name = "timm:resnet10t"
[[vision]]
name = "mobilenetv3_small_100"

[[text]]
name = "clip_text"
freeze = true
weights = "{weights}"
options = { width = 32, layers = 1, heads = 2, context_length = 16 }

[[fusions]]
name = "contrastive"
options = { embed_dim = 16 }
"""


@pytest.fixture
def suite_file(tmp_path, host):
    """Two runs sharing one frozen text tower (the same weights file, as a pretrained tower would)."""
    text = host.get("text", "clip_text").factory(pretrained=False, width=32, layers=1, heads=2, context_length=16)
    weights = tmp_path / "text.safetensors"
    save_file({k: v.contiguous() for k, v in text.state_dict().items()}, str(weights))
    path = tmp_path / "suite.toml"
    path.write_text(SUITE.replace("{weights}", str(weights)))
    return path


def _run_counting(suite_file, host, results, cache) -> tuple[list[int], list[dict]]:
    """Text-tower forward passes per run outside the cost measurement (which times the real tower)."""
    counts, records = [], []
    with counting_forward_passes(ClipTextEncoder) as passes:
        for run in load_suite(suite_file, host).runs:
            before = passes.calls
            outcome = run_suite([run], host, results, cache, torch.device("cpu"))
            counts.append(passes.calls - before)
            records.append(read_record(outcome.records[0]))
    return counts, records


@pytest.mark.slow  # most of a minute on 2 CPU cores: .ci/run's slow step
def test_a_frozen_text_tower_computes_nothing_after_the_first_run_with_metrics_of_an_uncached_suite(
    suite_file, host, tmp_path, monkeypatch
):
    monkeypatch.setenv("VLBENCH_EMBEDDING_CACHE", "off")
    plain_counts, plain = _run_counting(suite_file, host, tmp_path / "plain", tmp_path / "cache")
    monkeypatch.setenv("VLBENCH_EMBEDDING_CACHE", "on")
    counts, cached = _run_counting(suite_file, host, tmp_path / "cached", tmp_path / "cache")
    print(f"text-tower forward passes per run: uncached {plain_counts}, cached {counts}")
    assert all(n > 0 for n in plain_counts)
    assert counts[0] > 0 and counts[1:] == [0] * (len(counts) - 1)
    for a, b in zip(plain, cached, strict=True):
        assert a["status"] == b["status"] == "ok"
        assert a["metrics"]["splits"] == b["metrics"]["splits"]  # identical, not close
    first, second = (r["training"]["embedding_cache"]["text"] for r in cached)
    assert first["rows_computed"] > 0 and second["rows_computed"] == 0 and second["rows_from_cache"] > 0
    assert "embedding_cache" not in plain[0]["training"] or plain[0]["training"]["embedding_cache"] == {}


def test_the_key_separates_weights_options_and_inputs(tmp_path, host):
    spec = host.get("text", "clip_text")
    store = embedding_cache.open_store(tmp_path)
    choice = ComponentChoice("clip_text", {"width": 32, "layers": 1, "heads": 2, "context_length": 16, "freeze": True})
    torch.manual_seed(0)
    a = spec.factory(width=32, layers=1, heads=2, context_length=16).eval()
    torch.manual_seed(1)
    b = spec.factory(width=32, layers=1, heads=2, context_length=16).eval()
    wa = embedding_cache.CachedEncoder(a, embedding_cache.encoder_identity("text", spec, choice, a), store)
    wb = embedding_cache.CachedEncoder(b, embedding_cache.encoder_identity("text", spec, choice, b), store)
    assert wa.key != wb.key  # other weights, same name and options: never the same vectors
    other = ComponentChoice("clip_text", {**choice.options, "context_length": 15})
    assert embedding_cache.encoder_identity("text", spec, other, a) != embedding_cache.encoder_identity("text", spec, choice, a)
    text = a.tokenize(["a man in a red coat", "a woman with a bag"])
    with torch.inference_mode():
        first = wa(text)
        assert (wa.hits, wa.computed) == (0, 2)
        again = wa(text)
        assert (wa.hits, wa.computed) == (2, 2)
        assert (
            torch.equal(first.pooled, again.pooled)
            and torch.equal(first.tokens, again.tokens)
            and torch.equal(first.mask, again.mask)
        )
        assert torch.equal(wa(a.tokenize(["a woman with a bag"])).pooled, a(a.tokenize(["a woman with a bag"])).pooled)
        other_b = wb(text)
        assert wb.computed == 2 and not torch.equal(other_b.pooled, first.pooled)
    store.close()


def test_cache_info_and_clear(tmp_path, capsys, host):
    spec = host.get("text", "clip_text")
    encoder = spec.factory(width=32, layers=1, heads=2, context_length=16).eval()
    store = embedding_cache.open_store(tmp_path)
    wrapped = embedding_cache.CachedEncoder(
        encoder, embedding_cache.encoder_identity("text", spec, ComponentChoice("clip_text", {}), encoder), store
    )
    with torch.inference_mode():
        wrapped(encoder.tokenize(["one", "two", "three"]))
    store.close()
    assert cli.main(["cache", "info", "--cache-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 rows" in out and "text clip_text" in out
    assert cli.main(["cache", "clear", "--cache-dir", str(tmp_path)]) == 0
    assert cli.main(["cache", "info", "--cache-dir", str(tmp_path)]) == 0
    assert "0 rows" in capsys.readouterr().out


def test_a_cache_folder_that_is_a_file_exits_2_before_any_run(suite_file, tmp_path, capsys):
    cache = tmp_path / "file"
    cache.write_text("not a folder")
    code = cli.main(["run", str(suite_file), "--cache-dir", str(cache), "--results-dir", str(tmp_path / "r"), "--runs-dir", ""])
    assert code == 2 and "cannot be written" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
