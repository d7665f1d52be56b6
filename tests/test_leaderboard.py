"""Leaderboard: records -> validated, de-duplicated, partitioned tables -> md, csv, site, terminal."""

from __future__ import annotations

import argparse
import copy
import csv
import json
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console

from vlbench import leaderboard
from vlbench.errors import UserError
from vlbench.results import SCHEMA_VERSION, problems

XSS = "<img src=x onerror=alert(1)>"
_PARAMS = {"trainable": 1_500_000, "frozen": 500_000, "total": 2_000_000}
PARAMS_ONLY = {
    "params": {"unit": "parameters", "components": {"vision": _PARAMS}, "total": _PARAMS}
}  # what the engine records today


def make_record(
    run_id: str = "0000000000000001",
    *,
    suite: str = "quick",
    vision: str = "mobilenetv3_small_100",
    label: str | None = None,
    value: float = 40.0,
    status: str = "ok",
    task: str = "person_search",
    dataset: str = "synthetic_pedestrians",
    device_name: str = "Intel Xeon Platinum",
    precision: str = "fp32",
    finished_at: str = "2026-01-01T00:10:00+00:00",
    weights: str = "random-init",
    cost: dict[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """A valid record dict, as the engine writes it; it must pass the record schema."""

    def component(name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "plugin": f"plugin.{name}", "distribution": "vlbench", "version": "0.1.0", "options": {}, **extra}

    config = {
        "vision": {"name": vision, "options": {"image_size": [128, 64]}},
        "text": {"name": "clip_text", "options": {}},
        "fusion": {"name": "contrastive", "options": {}},
        "task": {"name": task, "options": {}},
        "dataset": {"name": dataset, "options": {}},
        "train": {"epochs": 2, "batch_size": 32},
        "seed": seed,
        "data_seed": 0,
    }
    ok = status == "ok"
    split = lambda v: {  # noqa: E731
        "values": {"R1": v, "R5": min(100.0, v + 20), "mAP": v / 2},
        "main": "R1",
        "chance": {"R1": 1.0, "R5": 5.0, "mAP": 1.2},
        "ci95": {"R1": [v - 2.5, v + 2.5]},
        "units": {"R1": "%", "R5": "%", "mAP": "%"},
        "details": {"n_queries": 100},
    }
    record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "suite": suite,
        "label": label if label is not None else f"{vision}+clip_text+contrastive/{task}",
        "status": status,
        "error": None
        if ok
        else {"type": "RuntimeError", "message": "CUDA out of memory <b>boom</b>", "traceback": "Traceback ..."},
        "components": {
            "vision": component(vision, weights=weights),
            "text": component("clip_text", weights=weights),
            "fusion": component("contrastive"),
            "task": component(task),
            "dataset": component(dataset),
        },
        "config": config,
        "metrics": {"main": "R1", "higher_is_better": True, "splits": {"val": split(value + 1), "test": split(value)}}
        if ok
        else {},
        "selection": {"split": "val", "metric": "R1", "best_epoch": 2, "best_value": value + 1} if ok else {},
        "cost": (PARAMS_ONLY if cost is None else cost) if ok else {},
        "training": {
            "epochs_run": 2,
            "steps": 20,
            "wall_s": 3.5,
            "curve": [
                {"epoch": 1, "train_loss": 3.2, "val_R1": value - 3, "lr": 1e-4, "epoch_s": 1.7},
                {"epoch": 2, "train_loss": 2.1, "val_R1": value + 1, "lr": 0.0, "epoch_s": 1.8},
            ],
        }
        if ok
        else {},
        "dataset": {"name": dataset, "synthetic": True},
        "environment": {
            "device": "cpu",
            "device_name": device_name,
            "precision": precision,
            "torch": "2.4.0",
            "git_commit": "abc123",
        }
        if ok
        else {"vlbench": "0.1.0", "git_commit": "abc123"},
        "seed": seed,
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": finished_at,
    }
    assert problems(record) == [], problems(record)
    return record


def timed(p50: float) -> dict[str, Any]:
    return {
        "p50_ms": p50,
        "p90_ms": p50 * 1.25,
        "p99_ms": p50 * 1.9,
        "mean_ms": p50 * 1.05,
        "min_ms": p50 * 0.9,
        "iterations": 40,
        "warmup_iterations": 5,
        "budget_s": 1.0,
    }


# A cost block shaped as efficiency.measure() writes it.
FULL_COST = {
    "params": {
        "unit": "parameters",
        "components": {
            "vision": {"trainable": 2_000_000, "frozen": 0, "total": 2_000_000},
            "text": {"trainable": 0, "frozen": 1_000_000, "total": 1_000_000},
        },
        "total": {"trainable": 2_000_000, "frozen": 1_000_000, "total": 3_000_000},
    },
    "flops": {
        "unit_flops": "FLOPs",
        "unit_macs": "MACs",
        "convention": "2 FLOPs per multiply-add",
        "objective": "embedding",
        "input": {"image": [1, 3, 128, 64], "text_length": 16, "batch": 1},
        "components": {
            "vision": {"flops": 2_400_000_000, "macs": 1_200_000_000, "ops": {"aten.convolution": 2_400_000_000}},
            "text": {"flops": 500_000_000, "macs": 250_000_000},
            "fusion": {"flops": 100_000_000, "macs": 50_000_000},
        },
        "total": {"flops": 3_000_000_000, "macs": 1_500_000_000},
    },
    "latency": {"unit": "ms", "batch": 1, "protocol": "timm", "vision": timed(3.0), "text": timed(0.5), "model": timed(4.0)},
    "throughput": {
        "unit": "images/s",
        "of": "vision encoder, synthetic images",
        "protocol": "timm",
        "batches": [
            {"requested_batch": 1, "batch": 1, "oom_batches": [], "images_per_s": 200.0, **timed(5.0)},
            {"requested_batch": 64, "batch": 64, "oom_batches": [], "images_per_s": 1800.0, **timed(35.0)},
            {"requested_batch": 512, "batch": None, "oom_batches": [512, 256, 128, 64, 32, 16, 8, 4, 2, 1]},
        ],
    },
    "memory": {
        "unit": "bytes",
        "inference": {"measured": True, "unit": "bytes", "method": "MemTracker", "peak_bytes": 512_000_000, "batch": 64},
        "train_step": {"measured": True, "unit": "bytes", "peak_bytes": 2_000_000_000, "batch": 32},
    },
    "fp16_size": {"bytes": 6_000_000, "mb": 6.0, "unit_mb": "MB = 10^6 bytes", "params": 3_000_000, "bytes_over_2x_params": 1.0},
    "problems": [],
}


def write(results: Path, record: dict[str, Any], name: str | None = None) -> Path:
    path = results / record["suite"] / f"{name or record['run_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def sample_results(root: Path) -> Path:
    """Two tasks, two hardware classes, a failed run, random-init runs and a model named like an XSS attack."""
    results = root / "results"
    write(results, make_record("a1", vision="mobilenetv3_small_100", value=30.0, cost=FULL_COST, weights="pretrained"))
    cheap = copy.deepcopy(FULL_COST) | {
        "params": {"unit": "parameters", "total": {"trainable": 1_000_000, "frozen": 0, "total": 1_000_000}}
    }
    write(
        results,
        make_record("a2", vision="efficientnet_b0", value=45.0, cost=cheap | {"latency": {"unit": "ms", "model": timed(9.0)}}),
    )
    write(results, make_record("a3", vision=XSS, value=20.0, device_name="NVIDIA H100", precision="bf16", cost=FULL_COST))
    write(results, make_record("b1", task="multilabel", dataset="scenes", vision="resnet18", value=70.0))
    write(results, make_record("f1", status="error", vision="convnext_tiny"))
    return results


@pytest.fixture(autouse=True)
def no_default_suites(tmp_path, monkeypatch):
    """The default ./suites folder is the repository's; tests pass their own or none."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> leaderboard.BuildResult:
    """The sample, published once for the tests that only read the output."""
    root = tmp_path_factory.mktemp("published")
    results = sample_results(root)
    return leaderboard.publish(results, root / "public", suites=results)  # a folder without suite files: nothing declared


# ---------------------------------------------------------------- loading


def test_bad_files_are_reported_by_name_and_skipped(tmp_path):
    results = tmp_path / "results"
    write(results, make_record("good"))
    no_seed = make_record("noseed")
    del no_seed["seed"]
    write(results, no_seed)
    write(results, make_record("typed") | {"seed": "0"})
    (results / "quick" / "broken.json").write_text("{not json")
    board = leaderboard.load(results)
    assert list(board.runs["run id"]) == ["good"]
    invalid = dict(board.invalid)
    assert "at the top level: 'seed' is a required property" in invalid["quick/noseed.json"]
    assert "at seed: '0' is not of type 'integer'" in invalid["quick/typed.json"]
    assert "unreadable" in invalid["quick/broken.json"]


def test_latest_successful_record_per_run_and_failed_runs(tmp_path):
    results = tmp_path / "results"
    write(results, make_record("same", value=10.0, finished_at="2026-01-01T00:00:00+00:00"), "old")
    write(results, make_record("same", value=50.0, finished_at="2026-02-01T00:00:00+00:00"), "new")
    write(results, make_record("same", value=30.0, finished_at="2026-01-15T00:00:00+00:00"), "middle")
    # fixed: an error, then a later success
    write(results, make_record("fixed", status="error", finished_at="2026-01-01T00:00:00+00:00"), "fixed-err")
    write(results, make_record("fixed", value=20.0, finished_at="2026-01-02T00:00:00+00:00"))
    # broke: a success, then a later error: listed as failed, the older success still ranked
    write(results, make_record("broke", value=25.0, finished_at="2026-01-01T00:00:00+00:00"))
    write(results, make_record("broke", status="error", finished_at="2026-01-03T00:00:00+00:00"), "broke-err")
    write(results, make_record("never", status="error"))
    # the same config in another suite is another run
    write(results, make_record("same", suite="other", value=5.0))
    board = leaderboard.load(results)
    ok = board.runs.set_index(["suite", "run id"])["main test"].to_dict()
    assert ok == {("quick", "same"): 50.0, ("quick", "fixed"): 20.0, ("quick", "broke"): 25.0, ("other", "same"): 5.0}
    failed = board.failed.set_index("run id")["note"].to_dict()
    assert set(failed) == {"broke", "never"}
    assert "older successful record" in failed["broke"] and failed["never"] == ""


def test_partitions_by_suite_task_and_hardware_class(tmp_path):
    board = leaderboard.load(sample_results(tmp_path))
    titles = [(p.suite, p.task, p.hardware, list(p.rows["model"])) for p in board.partitions()]
    assert titles == [
        ("quick", "multilabel", "Intel Xeon Platinum (fp32)", ["resnet18+clip_text+contrastive/multilabel"]),
        (
            "quick",
            "person_search",
            "Intel Xeon Platinum (fp32)",
            ["efficientnet_b0+clip_text+contrastive/person_search", "mobilenetv3_small_100+clip_text+contrastive/person_search"],
        ),
        ("quick", "person_search", "NVIDIA H100 (bf16)", [f"{XSS}+clip_text+contrastive/person_search"]),
    ]
    # ranks restart in each partition: the H100 run is first on its own hardware
    assert board.runs.set_index("run id")["#"].to_dict() == {"b1": 1, "a2": 1, "a1": 2, "a3": 1}
    fp16, bf16 = ({"device_name": "A100", "precision": p} for p in ("fp16", "bf16"))
    assert leaderboard.hardware_class(fp16) != leaderboard.hardware_class(bf16)


def test_cost_fields_are_optional_and_read_with_their_units(tmp_path):
    results = tmp_path / "results"
    write(results, make_record("full", cost=FULL_COST))
    write(results, make_record("bare", cost={}))
    giga = copy.deepcopy(FULL_COST)
    giga["flops"] |= {"unit_macs": "GMACs", "total": {"flops": 3_000_000_000, "macs": 1.5}}
    write(results, make_record("giga", cost=giga))
    mislabelled = make_record("mislabelled", cost=copy.deepcopy(FULL_COST))
    mislabelled["cost"]["flops"]["unit_macs"] = "FLOPs"
    write(results, mislabelled)
    board = leaderboard.load(results)
    runs = board.runs.set_index("run id")
    full = runs.loc["full"]
    assert (full["params (M)"], full["trainable params (M)"], full["vision params (M)"], full["text params (M)"]) == (
        3.0,
        2.0,
        2.0,
        1.0,
    )
    assert (full["GMACs"], full["vision GMACs"], full["GFLOPs"]) == pytest.approx((1.5, 1.2, 3.0))
    assert (full["latency p50 (ms)"], full["latency p90 (ms)"], full["vision latency p50 (ms)"]) == (4.0, 5.0, 3.0)
    assert (full["throughput (img/s)"], full["throughput batch"]) == (1800.0, 64)
    assert (full["inference memory (MB)"], full["train-step memory (MB)"], full["fp16 size (MB)"]) == (512.0, 2000.0, 6.0)
    assert full["cost problems"] == ""
    assert runs.loc["bare", ["params (M)", "GMACs", "latency p50 (ms)", "throughput (img/s)", "fp16 size (MB)"]].isna().all()
    assert runs.loc["giga", "GMACs"] == pytest.approx(1.5)
    # FLOPs filed as MACs: the record schema refuses the file, nothing is relabelled
    assert "mislabelled" not in runs.index
    assert "at cost.flops.unit_macs: 'FLOPs' does not match" in dict(board.invalid)["quick/mislabelled.json"]
    problem = copy.deepcopy(FULL_COST) | {"problems": ["flops: total has 3 FLOPs but 1 MACs"]}
    write(results, make_record("problem", cost=problem))
    assert "3 FLOPs but 1 MACs" in leaderboard.load(results).runs.set_index("run id").loc["problem", "cost problems"]


def cost_only_record(
    run_id: str, images_per_s: float, finished_at: str = "2026-01-01T00:10:00+00:00", **kw: Any
) -> dict[str, Any]:
    """A throughput-task record: cost block, no quality metric."""
    record = make_record(run_id, task="throughput", finished_at=finished_at, cost=copy.deepcopy(FULL_COST), **kw)
    record["cost"]["throughput"]["batches"][1]["images_per_s"] = images_per_s
    record |= {
        "metrics": {"quality": False, "main": None, "higher_is_better": None, "splits": {}},
        "selection": {},
        "training": {},
    }
    assert problems(record) == [], problems(record)
    return record


def test_cost_only_runs_get_unranked_cost_tables_fastest_first(tmp_path):
    results = tmp_path / "results"
    write(results, make_record("q1", suite="quick", value=30.0))
    write(results, cost_only_record("t1", 300.0, suite="speed", vision="resnet50"))
    write(results, cost_only_record("t2", 900.0, suite="speed", vision="mobilenetv3_small_100"))
    write(results, cost_only_record("t2", 50.0, suite="speed", finished_at="2026-01-01T00:00:00+00:00"), name="t2-older")
    write(results, make_record("t1", suite="speed", status="error", finished_at="2026-01-01T00:00:00+00:00"), name="t1-error")
    board = leaderboard.load(results, results)
    assert list(board.runs["run id"]) == ["q1"]  # never ranked beside quality runs
    (part,) = board.cost_partitions()
    assert (
        part.cost_only and list(part.rows["run id"]) == ["t2", "t1"] and list(part.rows["throughput (img/s)"]) == [900.0, 300.0]
    )
    assert board.failed.empty  # the error was followed by a successful cost-only record
    headers = [c.header for c in leaderboard.table_columns(part, detailed=False)]
    assert "#" not in headers and "Pareto-optimal on" not in headers
    assert {"params (M)", "GMACs", "latency p50 (ms)", "throughput (img/s)", "throughput batch", "fp16 size (MB)"} <= set(headers)
    result = leaderboard.build(results, tmp_path / "site", suites=results)
    markdown = (result.out / "LEADERBOARD.md").read_text()
    assert "### throughput (cost only, unranked: fastest first), Intel Xeon Platinum (fp32)" in markdown
    assert "1 successful run in 1 suite, 2 cost-only runs" in markdown
    assert (result.out / "runs" / "speed" / "t2.html").is_file()
    assert "throughput (cost only" in (result.out / "suites" / "speed.html").read_text()
    costs = pd.read_csv(result.out / "leaderboard_costs.csv")
    assert list(costs["run id"]) == ["t2", "t1"]


def test_pareto_mask():
    cost = [1.0, 2.0, 3.0, 2.0, 4.0, 1.0]
    score = [10.0, 20.0, 15.0, 20.0, 30.0, 5.0]
    assert leaderboard.pareto_mask(cost, score) == [True, True, False, True, True, False]


def test_missing_runs_come_from_the_suite_files(tmp_path, monkeypatch):
    results = tmp_path / "results"
    write(results, make_record("done"))
    write(results, make_record("broken", status="error"))
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "quick.toml").write_text('[suite]\nname = "quick"\n')
    (suites / "later.toml").write_text('[suite]\nname = "later"\n')
    runs = [argparse.Namespace(suite="quick", run_id=r, label=f"model-{r}") for r in ("done", "broken", "todo")]
    monkeypatch.setattr("vlbench.manager.PluginHost", lambda: None)
    monkeypatch.setattr("vlbench.suite.load_suite", lambda path, host: argparse.Namespace(runs=runs))
    board = leaderboard.load(results, suites)
    declared_in = str(suites / "quick.toml")
    assert board.missing.to_dict("records") == [
        {"suite": "quick", "run id": "todo", "model": "model-todo", "suite file": declared_in}
    ]
    assert list(board.failed["run id"]) == ["broken"]
    assert any("'later'" in note and "no records yet" in note for note in board.notes)


TOY_SUITE = """
vision = ["mobilenetv3_small_100", "efficientnet_b0"]
[suite]
name = "toy"
[[tasks]]
name = "person_search"
dataset = "synthetic_pedestrians"
[[text]]
name = "clip_text"
[[fusions]]
name = "contrastive"
"""


def test_suite_files_expand_with_the_real_plugins(tmp_path, host):
    from vlbench.suite import load_suite

    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "toy.toml").write_text(TOY_SUITE)
    (suites / "broken.toml").write_text('[suite]\nname = "quick"\n[[vision]]\nname = "no_such_encoder"\n')
    first, second = load_suite(suites / "toy.toml", host).runs
    results = tmp_path / "results"
    write(results, make_record(first.run_id, suite="toy"))
    write(results, make_record("done"))
    board = leaderboard.load(results, suites)
    assert list(board.missing["run id"]) == [second.run_id] and list(board.missing["model"]) == [second.label]
    assert len(board.runs) == 2
    assert any("broken.toml: could not be expanded" in note and "no_such_encoder" in note for note in board.notes)


def test_show_lists_missing_runs_only_when_asked(tmp_path, monkeypatch, host):
    from vlbench.suite import load_suite

    monkeypatch.chdir(tmp_path)  # ./suites is the default suite folder
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "toy.toml").write_text(TOY_SUITE)
    first, second = load_suite(suites / "toy.toml", host).runs
    results = tmp_path / "results"
    write(results, make_record(first.run_id, suite="toy"))
    _, plain = _cli(["leaderboard", "show", str(results)])  # the records alone: no suite is expanded
    assert second.run_id not in plain and "missing runs not checked" in plain and "add --missing" in plain
    for option in (["--missing"], ["--suites", "suites/toy.toml"]):
        _, text = _cli(["leaderboard", "show", str(results), *option])
        assert "Missing runs" in text and second.run_id in text and "1 missing" in text


# ---------------------------------------------------------------- outputs


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.links += [v for k, v in attrs if k in ("href", "src") and v]


def test_build_writes_markdown_csv_site_and_plots(published):
    out = published.out
    rows = list(csv.DictReader((out / "leaderboard.csv").open(encoding="utf-8")))
    assert sorted(r["run id"] for r in rows) == ["a1", "a2", "a3", "b1"]
    header = rows[0].keys()
    for column in (
        "params (M)",
        "GMACs",
        "latency p50 (ms)",
        "throughput (img/s)",
        "main test",
        "CI95 low",
        "chance",
        "test R5 (%)",
    ):
        assert column in header
    markdown = (out / "LEADERBOARD.md").read_text(encoding="utf-8")
    assert (
        "| # | model | weights | R1 test (%) | 95% CI (%) | vs leader | chance (%) | params (M) | GMACs | latency p50 (ms) |"
        in markdown
    )
    assert "## Failed runs" in markdown and "convnext" in markdown and "## Missing runs" in markdown
    assert "random-init" in markdown and "![R1 against cost" in markdown
    for page in ("index.html", "suites/quick.html", "runs/quick/a1.html", "runs/quick/f1.error.html", "assets/leaderboard.js"):
        assert (out / page).is_file(), page
    plots = sorted((out / "plots").glob("*.svg"))
    assert len(plots) == 3  # one per task and hardware class
    svg = ET.parse(plots[0]).getroot()
    assert svg.tag.endswith("svg")
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.count("<tr data-random-init>") == 3 and '<span class="badge">random-init</span>' in index
    for heading in ("params (M)", "GMACs", "latency p50 (ms)", "R1 test (%)"):
        assert f'<button type="button">{heading}</button>' in index
    run = (out / "runs/quick/a1.html").read_text(encoding="utf-8")
    facts = (
        "plugin.mobilenetv3_small_100",
        "abc123",
        "Intel Xeon Platinum",
        "train loss, first → last epoch",
        "3.2 → 2.1",
        "1,500,000,000",
    )
    for fact in facts:
        assert fact in run, fact


def test_every_page_link_stays_inside_the_published_folder(published):
    out = published.out
    assert (out / ".nojekyll").is_file()
    for page in out.rglob("*.html"):
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for link in parser.links:
            assert not re.match(r"[a-z]+:|//", link), f"{page}: {link} leaves the site"
            target = (page.parent / link).resolve()
            assert target.is_file() and out.resolve() in target.parents, f"{page}: broken link {link}"


def test_strings_from_records_are_escaped_everywhere(tmp_path):
    results = sample_results(tmp_path)
    evil = make_record("evil", suite=XSS, vision=XSS, task=f"task{XSS}", dataset="[x](javascript:alert(1))|", cost=FULL_COST)
    evil["components"]["vision"]["plugin"] = XSS
    evil["environment"]["device_name"] = XSS
    evil["config"]["train"]["note"] = XSS
    write(results, evil, "evil")
    failed = make_record("evil-fail", suite=XSS, status="error")
    failed["error"]["message"] = XSS
    write(results, failed, "evil-fail")
    out = leaderboard.build(results, tmp_path / "site").out
    for page in [*out.rglob("*.html"), out / "LEADERBOARD.md"]:
        text = page.read_text(encoding="utf-8")
        assert "<img src=x" not in text, page
        parser = _Links()
        parser.feed(text)
        assert not [(tag, name) for tag, attrs in parser.tags for name in attrs if name.startswith("on")], page
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "&lt;img src=x onerror=alert(1)&gt;" in index
    markdown = (out / "LEADERBOARD.md").read_text(encoding="utf-8")
    assert r"\[x\](javascript:alert(1))\|" in markdown
    js = (out / "assets/leaderboard.js").read_text(encoding="utf-8")
    assert "innerHTML" not in js.replace("never passes through innerHTML", "")


def test_a_script_in_a_component_name_or_option_is_escaped_on_every_page(tmp_path):
    script = "<script>alert('x')</script>"
    results = tmp_path / "results"
    record = make_record("s1", vision=f"net{script}", cost=FULL_COST)
    record["components"]["text"]["options"] = {"note": script, script: 1}
    record["components"]["fusion"]["name"] = script
    record["config"]["train"]["note"] = script
    record["dataset"]["note"] = script
    write(results, record)
    failed = make_record("s2", status="error", vision=script)
    failed["error"]["traceback"] = script
    write(results, failed)
    out = leaderboard.build(results, tmp_path / "site").out
    pages = [*out.rglob("*.html"), out / "LEADERBOARD.md"]
    assert {"index.html", "suites/quick.html", "runs/quick/s1.html", "runs/quick/s2.error.html"} <= {
        p.relative_to(out).as_posix() for p in pages
    }
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "<script>alert" not in text, page
        parser = _Links()
        parser.feed(text)
        assert [attrs.get("src") for tag, attrs in parser.tags if tag == "script"] in (
            [],
            ["../" * page.relative_to(out).as_posix().count("/") + "assets/leaderboard.js"],
        ), page
    run = (out / "runs/quick/s1.html").read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in run  # the option, shown as text


def test_rebuild_removes_stale_pages_and_keeps_the_results(tmp_path):
    results = sample_results(tmp_path)
    out = tmp_path / "leaderboard"
    results_copy = out / "results"
    results_copy.mkdir(parents=True)
    (results_copy / "keep.txt").write_text("data")
    leaderboard.build(results, out)
    assert (out / "runs/quick/a3.html").is_file()
    (results / "quick/a3.json").unlink()
    leaderboard.build(results, out)
    assert not (out / "runs/quick/a3.html").exists()
    assert (results_copy / "keep.txt").read_text() == "data"
    assert len(list((out / "plots").glob("*.svg"))) == 2  # the H100 class is gone with its only run


def test_publish_refuses_a_foreign_folder(tmp_path):
    out = tmp_path / "home"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not an empty folder"):
        leaderboard.publish(sample_results(tmp_path), out)
    assert (out / "notes.txt").read_text() == "mine"


def test_an_empty_results_folder_builds_an_empty_leaderboard(tmp_path):
    (tmp_path / "results").mkdir()
    result = leaderboard.build(tmp_path / "results", tmp_path / "site")
    assert "0 successful runs" in (result.out / "index.html").read_text(encoding="utf-8")
    assert any("Missing runs were not checked" in n for n in result.board.notes)


# ---------------------------------------------------------------- CLI and terminal


def _cli(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="vlbench")
    leaderboard.add_leaderboard_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    console = Console(record=True, width=200, force_terminal=False)
    return args.func(args, console), console.export_text()


def test_cli_build_show_and_publish(tmp_path):
    results = tmp_path / "results"
    write(results, make_record("ok", vision="efficientnet_b0", cost=FULL_COST))
    write(results, make_record("xss", vision=XSS))
    write(results, make_record("failed", status="error"))
    write(results, make_record("bad") | {"seed": None})
    code, text = _cli(["leaderboard", "build", str(results), "--out", str(tmp_path / "built")])
    assert code == 0 and "skipped" in text and "bad.json" in text and (tmp_path / "built/index.html").is_file()
    code, text = _cli(["leaderboard", "show", str(results)])
    assert code == 0
    assert "efficientnet_b0 " in text and "every run: clip_text contrastive" in text and "latency p50 (ms)" in text
    assert "<img src=x" in text and "Failed runs" in text and "Invalid record files" in text
    code, _ = _cli(["leaderboard", "publish", str(results), "--out", str(tmp_path / "public")])
    assert code == 0 and (tmp_path / "public/index.html").is_file()
    with pytest.raises(UserError, match="no such results folder"):
        _cli(["leaderboard", "show", str(tmp_path / "nowhere")])
    with pytest.raises(UserError, match="no such suite file"):
        _cli(["leaderboard", "show", str(results), "--suites", str(tmp_path / "nowhere.toml")])
    with pytest.raises(SystemExit):
        _cli(["leaderboard", "publish", str(results)])  # --out is required


def test_rich_markup_in_names_is_printed_as_text(tmp_path):
    results = tmp_path / "results"
    write(results, make_record("m", vision="[bold red]x[/bold red]"))
    _, text = _cli(["leaderboard", "show", str(results)])
    assert "[bold red]x[/bold red]" in text


def test_rows_whose_interval_overlaps_the_leaders_are_flagged():
    from vlbench.leaderboard.tables import _versus_leader

    runs = pd.DataFrame(
        {
            "suite": "s",
            "task": "t",
            "dataset": "d",
            "hardware": "h",
            "model": list("abcd"),
            "#": [1, 2, 3, 4],
            "CI95 low": [50.0, 45.0, 20.0, None],
            "CI95 high": [60.0, 52.0, 30.0, None],
        }
    )
    assert _versus_leader(runs).tolist() == ["leader", "CI overlaps", "", "no CI"]
