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

import pytest
from rich.console import Console

from vlbench import leaderboard
from vlbench.errors import UserError
from vlbench.results import SCHEMA_VERSION, problems

XSS = "<img src=x onerror=alert(1)>"


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

    config = {"vision": {"name": vision, "options": {"image_size": [128, 64]}}, "text": {"name": "clip_text", "options": {}},
              "fusion": {"name": "contrastive", "options": {}}, "task": {"name": task, "options": {}},
              "dataset": {"name": dataset, "options": {}}, "train": {"epochs": 2, "batch_size": 32}, "seed": seed, "data_seed": 0}
    ok = status == "ok"
    split = lambda v: {  # noqa: E731
        "values": {"R1": v, "R5": min(100.0, v + 20), "mAP": v / 2}, "main": "R1", "chance": {"R1": 1.0, "R5": 5.0, "mAP": 1.2},
        "ci95": {"R1": [v - 2.5, v + 2.5]}, "units": {"R1": "%", "R5": "%", "mAP": "%"}, "details": {"n_queries": 100},
    }
    record = {
        "schema_version": SCHEMA_VERSION, "run_id": run_id, "suite": suite,
        "label": label if label is not None else f"{vision}+clip_text+contrastive/{task}", "status": status,
        "error": None if ok else {"type": "RuntimeError", "message": "CUDA out of memory <b>boom</b>", "traceback": "Traceback ..."},
        "components": {
            "vision": component(vision, weights=weights), "text": component("clip_text", weights=weights),
            "fusion": component("contrastive"), "task": component(task), "dataset": component(dataset),
        },
        "config": config,
        "metrics": {"main": "R1", "higher_is_better": True, "splits": {"val": split(value + 1), "test": split(value)}} if ok else {},
        "selection": {"split": "val", "metric": "R1", "best_epoch": 2, "best_value": value + 1} if ok else {},
        "cost": (cost if cost is not None else {"params": {"unit": "parameters", "components": {}, "total": {"trainable": 1_500_000, "frozen": 500_000, "total": 2_000_000}}}) if ok else {},
        "training": {"epochs_run": 2, "steps": 20, "wall_s": 3.5, "curve": [
            {"epoch": 1, "train_loss": 3.2, "val_R1": value - 3, "lr": 1e-4, "epoch_s": 1.7},
            {"epoch": 2, "train_loss": 2.1, "val_R1": value + 1, "lr": 0.0, "epoch_s": 1.8}]} if ok else {},
        "dataset": {"name": dataset, "synthetic": True},
        "environment": {"device": "cpu", "device_name": device_name, "precision": precision, "torch": "2.4.0", "git_commit": "abc123"}
        if ok else {"vlbench": "0.1.0", "git_commit": "abc123"},
        "seed": seed, "started_at": "2026-01-01T00:00:00+00:00", "finished_at": finished_at,
    }
    assert problems(record) == [], problems(record)
    return record


FULL_COST = {
    "params": {"unit": "parameters", "components": {"vision": {"trainable": 2_000_000, "frozen": 0, "total": 2_000_000}},
               "total": {"trainable": 2_000_000, "frozen": 1_000_000, "total": 3_000_000}},
    "macs": {"unit": "MACs", "total": 1.5e9, "components": {"vision": 1.2e9, "text": 0.3e9}, "input": {"image": [1, 3, 128, 64]}},
    "flops": {"unit": "GFLOPs", "total": 3.0},
    "latency": {"unit": "ms", "batch_size": 1, "p50": 4.0, "p90": 5.0, "p99": 7.5},
    "throughput": {"unit": "img/s", "batch_sizes": {"1": 200.0, "64": 1800.0, "128": 1700.0}},
    "memory": {"peak_bytes": 512 * 2**20},
    "fp16_bytes": 6 * 2**20,
}


def write(results: Path, record: dict[str, Any], name: str | None = None) -> Path:
    path = results / record["suite"] / f"{name or record['run_id']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record), encoding="utf-8")
    return path


def sample_results(root: Path) -> Path:
    """Two tasks, two hardware classes, a failed run, a re-run, a random-init run and an XSS name."""
    results = root / "results"
    write(results, make_record("a1", vision="mobilenetv3_small_100", value=30.0, cost=FULL_COST, weights="pretrained"))
    cheap = copy.deepcopy(FULL_COST) | {"params": {"total": {"trainable": 1_000_000, "frozen": 0, "total": 1_000_000}}}
    write(results, make_record("a2", vision="efficientnet_b0", value=45.0, cost=cheap | {"latency": {"p50": 9.0, "p90": 9.5, "p99": 9.9}}))
    write(results, make_record("a3", vision=XSS, value=20.0, device_name="NVIDIA H100", precision="bf16", cost=FULL_COST))
    write(results, make_record("b1", task="multilabel", dataset="scenes", vision="resnet18", value=70.0))
    write(results, make_record("f1", status="error", vision="convnext_tiny"))
    return results


def build(tmp_path: Path) -> leaderboard.BuildResult:
    return leaderboard.build(sample_results(tmp_path), tmp_path / "site")


@pytest.fixture(autouse=True)
def no_default_suites(tmp_path, monkeypatch):
    """The default ./suites folder is the repository's; tests pass their own or none."""
    monkeypatch.chdir(tmp_path)


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
    assert "missing field 'seed'" in invalid["quick/noseed.json"]
    assert "field 'seed' should be an integer" in invalid["quick/typed.json"]
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
        ("quick", "person_search", "Intel Xeon Platinum (fp32)",
         ["efficientnet_b0+clip_text+contrastive/person_search", "mobilenetv3_small_100+clip_text+contrastive/person_search"]),
        ("quick", "person_search", "NVIDIA H100 (bf16)", [f"{XSS}+clip_text+contrastive/person_search"]),
    ]
    # ranks restart in each partition: the H100 run is first on its own hardware
    assert board.runs.set_index("run id")["#"].to_dict() == {"b1": 1, "a2": 1, "a1": 2, "a3": 1}
    assert leaderboard.hardware_class({"device_name": "A100", "precision": "fp16"}) != leaderboard.hardware_class({"device_name": "A100", "precision": "bf16"})


def test_cost_fields_are_optional_and_converted_to_the_column_units(tmp_path):
    results = tmp_path / "results"
    write(results, make_record("full", cost=FULL_COST))
    write(results, make_record("bare", cost={}))
    seconds = {"latency": {"unit": "s", "p50": 0.002}, "macs": {"unit": "GFLOPs", "total": 4.0}, "memory": {"unit": "MiB", "peak": 100}}
    write(results, make_record("other-units", cost=seconds))
    runs = leaderboard.load(results).runs.set_index("run id")
    full = runs.loc["full"]
    assert full["params (M)"] == 3.0 and full["trainable params (M)"] == 2.0
    assert full["GMACs"] == pytest.approx(1.5) and full["GFLOPs"] == pytest.approx(3.0)
    assert (full["latency p50 (ms)"], full["latency p90 (ms)"], full["latency p99 (ms)"]) == (4.0, 5.0, 7.5)
    assert (full["throughput (img/s)"], full["throughput batch"]) == (1800.0, 64)
    assert full["peak memory (MiB)"] == 512.0 and full["fp16 size (MiB)"] == 6.0
    assert runs.loc["bare", ["params (M)", "GMACs", "latency p50 (ms)"]].isna().all()
    other = runs.loc["other-units"]
    assert other["latency p50 (ms)"] == pytest.approx(2.0) and other["peak memory (MiB)"] == 100.0
    assert other["GMACs"] != other["GMACs"]  # FLOPs filed as MACs are refused, not relabelled


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
    assert board.missing.to_dict("records") == [{"suite": "quick", "run id": "todo", "model": "model-todo", "suite file": str(suites / "quick.toml")}]
    assert list(board.failed["run id"]) == ["broken"]
    assert any("'later'" in note and "no records yet" in note for note in board.notes)


def test_a_suite_that_cannot_be_expanded_is_a_note_not_a_crash(tmp_path):
    results = tmp_path / "results"
    write(results, make_record("done"))
    suite = tmp_path / "quick.toml"
    suite.write_text('[suite]\nname = "quick"\n[[vision]]\nname = "no_such_encoder"\n')
    board = leaderboard.load(results, suite)
    assert len(board.runs) == 1 and board.missing.empty
    assert any("could not be expanded" in note for note in board.notes)


# ---------------------------------------------------------------- outputs


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self.links += [v for k, v in attrs if k in ("href", "src") and v]


def test_build_writes_markdown_csv_site_and_plots(tmp_path):
    result = build(tmp_path)
    out = result.out
    rows = list(csv.DictReader((out / "leaderboard.csv").open(encoding="utf-8")))
    assert sorted(r["run id"] for r in rows) == ["a1", "a2", "a3", "b1"]
    header = rows[0].keys()
    for column in ("params (M)", "GMACs", "latency p50 (ms)", "throughput (img/s)", "main test", "CI95 low", "chance", "test R5 (%)", "hardware"):
        assert column in header
    markdown = (out / "LEADERBOARD.md").read_text(encoding="utf-8")
    assert "| # | model | weights | R1 test (%) | 95% CI (%) | chance (%) | params (M) | GMACs | latency p50 (ms) |" in markdown
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
        assert f"<button type=\"button\">{heading}</button>" in index
    run = (out / "runs/quick/a1.html").read_text(encoding="utf-8")
    for fact in ("plugin.mobilenetv3_small_100", "abc123", "Intel Xeon Platinum", "train loss, first → last epoch", "3.2 → 2.1", "1.5e+09"):
        assert fact in run, fact


def test_every_page_link_stays_inside_the_published_folder(tmp_path):
    out = tmp_path / "public"
    leaderboard.publish(sample_results(tmp_path), out)
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
    results = sample_results(tmp_path)
    write(results, make_record("bad") | {"seed": None})
    code, text = _cli(["leaderboard", "build", str(results), "--out", str(tmp_path / "built")])
    assert code == 0 and "skipped" in text and "bad.json" in text and (tmp_path / "built/index.html").is_file()
    code, text = _cli(["leaderboard", "show", str(results)])
    assert code == 0
    assert "efficientnet_b0+clip_text" in text and "latency p50 (ms)" in text
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
