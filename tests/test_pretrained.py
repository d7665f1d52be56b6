"""Pretrained weights through the libraries' own caches: `vlbench weights list|fetch` against a
Hugging Face cache laid out in the test (no network), and the provenance in the record."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from vlbench import cli, hookimpl, pretrained
from vlbench.engine import run_suite
from vlbench.manager import PluginHost
from vlbench.results import read_record
from vlbench.suite import load_suite
from vlbench.types import VisionEncoderSpec

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SUITE = """
[suite]
name = "pre"

[train]
epochs = 1
batch_size = 16
max_steps_per_epoch = 1
eval_batch_size = 64
cost_batch_sizes = [1]
cost_budget_s = 0.05

[defaults.vision]
image_size = [64, 32]
pretrained = true

[[tasks]]
name = "person_search"
options = { bootstrap = 0 }
dataset_options = { identities = [8, 4, 4], views_per_identity = 2, image_size = [64, 32] }

[[vision]]
name = "timm:resnet10t"
{more}
[[text]]
name = "clip_text"
options = { width = 32, layers = 1, heads = 2, context_length = 16 }

[[fusions]]
name = "contrastive"
options = { embed_dim = 16 }
"""


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A Hugging Face hub cache holding timm's resnet10t.c3_in1k as `hf download` lays it out."""
    import huggingface_hub.constants

    root = tmp_path / "hub"
    repo = root / "models--timm--resnet10t.c3_in1k"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    torch.manual_seed(0)
    model = timm.create_model("resnet10t", pretrained=False)  # with its classifier, as the hub file has it
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return snapshot / "model.safetensors"


def test_weights_list_shows_present_and_missing_with_sizes_and_the_fetch_command(hub, tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.replace("{more}", '[[vision]]\nname = "convnext_atto"\n'))
    assert cli.main(["weights", "list", str(suite)]) == 1  # something is missing
    out = capsys.readouterr().out
    present = next(line for line in out.splitlines() if "timm:resnet10t" in line)
    assert (
        "present" in present and f"{hub.stat().st_size / 1024**2:.1f} MiB" in present and "hf:timm/resnet10t.c3_in1k" in present
    )
    assert "missing" in next(line for line in out.splitlines() if "convnext_atto" in line)
    assert "fetch: hf download timm/convnext_atto.d2_in1k model.safetensors" in out
    assert cli.main(["weights", "fetch", str(suite), "--offline"]) == 2
    assert "hf download timm/convnext_atto.d2_in1k" in capsys.readouterr().err


def test_a_run_records_the_weights_source_revision_and_checksum(hub, tmp_path, host):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.replace("{more}", ""))
    outcome = run_suite(load_suite(suite, host).runs, host, tmp_path / "results", tmp_path / "cache", torch.device("cpu"))
    record = read_record(outcome.records[0])
    assert record["status"] == "ok", record["error"]
    source = record["components"]["vision"]["weights_source"]
    assert source == {
        "source": "hf:timm/resnet10t.c3_in1k",
        "hub": "huggingface",
        "revision": COMMIT,
        "file": "model.safetensors",
        "sha256": hashlib.sha256(hub.read_bytes()).hexdigest(),
    }
    assert "weights_source" not in record["components"]["text"]  # random init: no source to state


@pytest.fixture
def online_hub(tmp_path, monkeypatch):
    """An empty Hugging Face cache, downloads allowed, and huggingface_hub's download function
    (the one timm, open_clip and transformers call) replaced by one that lays the file out in
    the cache as the real one does, and counts its calls. No network."""
    import huggingface_hub
    import huggingface_hub.constants

    root = tmp_path / "hub"
    root.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")  # restored afterwards even when --offline sets it to 1
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    calls: list[tuple[str, str, str | None]] = []

    def hf_hub_download(repo_id, filename, revision=None, **_):
        calls.append((repo_id, filename, revision))
        assert repo_id == "timm/resnet10t.c3_in1k", f"only resnet10t is on this fake hub, asked for {repo_id}"
        repo = root / f"models--{repo_id.replace('/', '--')}"
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / "main").write_text(COMMIT)
        (repo / "snapshots" / COMMIT).mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = timm.create_model("resnet10t", pretrained=False)
        path = repo / "snapshots" / COMMIT / filename
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    return calls


def _run(suite: Path, tmp_path: Path, *flags: str) -> int:
    return cli.main(
        [
            "run",
            str(suite),
            "--results-dir",
            str(tmp_path / "results"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--runs-dir",
            "",
            *flags,
        ]
    )


def test_an_online_run_downloads_missing_weights_through_the_hub_once_and_records_them(online_hub, tmp_path, capsys, host):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.replace("{more}", ""))
    assert _run(suite, tmp_path) == 0, capsys.readouterr().err
    assert online_hub == [("timm/resnet10t.c3_in1k", "model.safetensors", None)]
    assert "downloading vision timm:resnet10t: hf:timm/resnet10t.c3_in1k" in capsys.readouterr().out
    (record,) = [read_record(p) for p in (tmp_path / "results" / "pre").glob("*.json")]
    cached = tmp_path / "hub" / "models--timm--resnet10t.c3_in1k" / "snapshots" / COMMIT / "model.safetensors"
    assert record["components"]["vision"]["weights_source"]["sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert record["components"]["vision"]["weights_source"]["revision"] == COMMIT
    said: list[str] = []
    pretrained.ensure_available(load_suite(suite, host).runs, host, suite, said.append)  # what the next `vlbench run` does first
    assert len(online_hub) == 1 and said == []  # read from the cache the first run filled


@pytest.mark.parametrize("how", ["--offline", "HF_HUB_OFFLINE"])
def test_offline_and_missing_exits_2_with_the_fetch_command_before_anything_runs(online_hub, tmp_path, capsys, monkeypatch, how):
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.replace("{more}", ""))
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _run(suite, tmp_path, *(["--offline"] if how == "--offline" else [])) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"`vlbench weights fetch {suite}`" in err and "vision timm:resnet10t (hf:timm/resnet10t.c3_in1k)" in err
    assert "Traceback" not in err and online_hub == [] and not (tmp_path / "results").exists()


def test_a_failed_download_exits_2_with_the_commands_that_fetch_it(online_hub, tmp_path, capsys, monkeypatch):
    import huggingface_hub

    def unreachable(*_, **__):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.replace("{more}", ""))
    assert _run(suite, tmp_path) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "ConnectionError: Name or service not known" in err and f"`vlbench weights fetch {suite}`" in err
    assert "`hf download timm/resnet10t.c3_in1k model.safetensors`" in err and not (tmp_path / "results").exists()


def _mine_weights(options):
    return pretrained.WeightsSource.huggingface("timm/resnet10t.c3_in1k")


class _Mine:
    @hookimpl
    def vlbench_register_vision_encoders(self, register):
        register(VisionEncoderSpec(name="mine", factory=lambda **options: None, weights_source=_mine_weights))


def test_a_third_party_spec_declares_where_its_weights_come_from(hub, tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text(
        SUITE.replace("{more}", '[[vision]]\nname = "mine"\n[[vision]]\nname = "convnext_atto"\npretrained = false\n')
    )
    sources = pretrained.suite_sources(suite, PluginHost(extra_plugins=[("mine", _Mine())]))
    assert [(s.component, s.describe()) for s in sources] == [
        ("timm:resnet10t", "hf:timm/resnet10t.c3_in1k"),
        ("mine", "hf:timm/resnet10t.c3_in1k"),  # what the spec declares, found in the same cache
    ]  # random init (convnext_atto, clip_text) loads nothing
    assert pretrained.locate(sources[1].weights) == hub
