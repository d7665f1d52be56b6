"""Cost that knows its conditions, honest labels, terminal tables that fit, the one default
results folder, and --cost-retries."""

from __future__ import annotations

import copy
import multiprocessing
import time
from typing import Any

import pytest
import torch
from rich.console import Console
from test_leaderboard import FULL_COST, _cli, make_record, write

from vlbench import cli, cost_retry, folders, interference, leaderboard, run_command
from vlbench.leaderboard.records import _reference
from vlbench.leaderboard.terminal import fit, show
from vlbench.results import read_record

QUIET = {
    "host_cores": 2,
    "usable_cores": 2,
    "timing_threads": 1,
    "steal_share": 0.0,
    "seconds": 3.0,
    "before": {"load_1min": 0.3, "other_runnable": 0},
    "after": {"load_1min": 0.4, "other_runnable": 1},
    "probe": {"before": {"median_ms": 1.0, "min_ms": 0.95}, "after": {"median_ms": 1.05, "min_ms": 0.97}},
    "spread": {"worst_p90_over_p50": 1.1, "of": "latency.model"},
}


def loaded(**changes: Any) -> dict[str, Any]:
    conditions = copy.deepcopy(QUIET)
    for key, value in changes.items():
        conditions[key] = value
    return conditions


def test_quiet_conditions_pass_and_each_kind_of_interference_is_named():
    assert interference.judge(QUIET) == []
    cases = {
        "load": loaded(before={"load_1min": 4.5, "other_runnable": 0}),
        # one other runnable thread fits on the core the single timing thread leaves free; two do not
        "runnable": loaded(after={"load_1min": 0.4, "other_runnable": 2}),
        "steal": loaded(steal_share=0.2),
        "spread": loaded(spread={"worst_p90_over_p50": 3.0, "of": "latency.text"}),
        "probe_drift": loaded(probe={"before": {"median_ms": 1.0, "min_ms": 0.95}, "after": {"median_ms": 2.5, "min_ms": 2.4}}),
        "probe_spread": loaded(probe={"before": {"median_ms": 2.0, "min_ms": 0.9}, "after": {"median_ms": 2.0, "min_ms": 1.9}}),
    }
    for name, conditions in cases.items():
        found = interference.judge(conditions)
        assert name in {p["name"] for p in found}, (name, found)
        assert all(p["value"] > p["limit"] for p in found)
    # the load average counts the measurement's own threads: two timing threads on 2 cores are not interference
    assert (
        interference.judge(
            loaded(
                timing_threads=2, before={"load_1min": 2.1, "other_runnable": 0}, after={"load_1min": 2.1, "other_runnable": 0}
            )
        )
        == []
    )
    two_threads = loaded(timing_threads=2, after={"load_1min": 0.4, "other_runnable": 1})  # no core left free
    assert [p["name"] for p in interference.judge(two_threads)] == ["runnable"]


def test_repetition_spread_ignores_figures_under_a_millisecond():
    cost = {"latency": {"vision": {"p50_ms": 0.2, "p90_ms": 2.0}, "model": {"p50_ms": 4.0, "p90_ms": 5.0}}}
    assert interference.repetition_spread(cost) == {"worst_p90_over_p50": 1.25, "of": "latency.model"}


def _spin(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


def test_watch_flags_a_measurement_made_while_busy_processes_spin():
    """The detector end to end: with twice as many spinning processes as cores, the
    runnable-thread count alone exceeds what the host can hold, whatever else runs."""
    cores = torch.multiprocessing.cpu_count()
    workers = [multiprocessing.Process(target=_spin, args=(time.time() + 20,), daemon=True) for _ in range(2 * cores + 1)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(0.5)
        watch = interference.Watch()
        conditions = watch.finish({})
    finally:
        for worker in workers:
            worker.terminate()
            worker.join()
    assert conditions["noisy"] is True and "runnable" in {p["name"] for p in conditions["problems"]}
    assert conditions["probe"]["before"]["calls"] == interference.PROBE_CALLS
    assert set(conditions) >= {"before", "after", "steal_share", "spread", "thresholds", "problems"}


def noisy_cost(names: tuple[str, ...] = ("load",)) -> dict[str, Any]:
    problems = [{"name": n, "value": 2.0, "limit": 1.0, "message": n} for n in names]
    return FULL_COST | {"conditions": loaded() | {"problems": problems, "noisy": True}}


def test_noisy_cost_and_not_above_chance_are_flagged_and_never_pareto_optimal(tmp_path):
    results = tmp_path / "results"
    write(results, make_record("0000000000000001", vision="resnet18", value=40.0, cost=FULL_COST))
    write(results, make_record("0000000000000002", vision="cheap_noisy", value=45.0, cost=noisy_cost()))
    at_chance = make_record("0000000000000003", vision="at_chance", value=2.0, cost=FULL_COST)  # CI [-0.5, 4.5] holds chance 1.0
    write(results, at_chance)
    board = leaderboard.load(results)
    rows = board.runs.set_index("vision")
    assert rows.loc["resnet18", "Pareto-optimal on"] == "params, GMACs, latency"
    assert rows.loc["cheap_noisy", "Pareto-optimal on"] == "" and rows.loc["cheap_noisy", "flags"] == "noisy cost (load)"
    assert rows.loc["at_chance", "Pareto-optimal on"] == "" and rows.loc["at_chance", "flags"] == "not above chance"
    assert any("busy machine" in note for note in board.notes) and any("not above chance" in note for note in board.notes)
    included = leaderboard.load(results, include_noisy=True).runs.set_index("vision")
    assert included.loc["cheap_noisy", "Pareto-optimal on"] != "" and included.loc["resnet18", "Pareto-optimal on"] == ""


def test_above_reference_uses_the_ci_and_the_best_baseline_where_there_is_no_chance():
    assert leaderboard.above_reference(10.0, 5.0, 15.0, 4.0, higher=True)
    assert not leaderboard.above_reference(10.0, 3.0, 15.0, 4.0, higher=True)
    assert not leaderboard.above_reference(1.0, 0.5, 1.5, 1.2, higher=False)  # lower is better: CI reaches the reference
    assert leaderboard.above_reference(1.0, None, None, 1.2, higher=False)
    test = {"chance": {}, "baselines": {"majority": {"acc": 30.0}, "prior": {"acc": 35.0}}}
    assert _reference(test, "acc", True) == (35.0, "the best baseline")


def test_show_fits_80_columns_keeping_model_and_main_metric_whole(tmp_path):
    results = tmp_path / "results"
    for i, vision in enumerate(("timm:edgenext_xx_small", "mobilenetv3_large_100", "convnext_atto")):
        write(results, make_record(f"000000000000000{i}", vision=vision, value=30.0 - i, cost=FULL_COST))
    write(
        results,
        make_record("00000000000000ff", status="error", finished_at="2026-01-01T00:20:00+00:00")
        | {"error": {"type": "ValueError", "message": "a long message " * 12 + "THE FIX IS HERE", "traceback": ""}},
    )
    board = leaderboard.load(results)
    for width in (80, 120):
        console = Console(width=width, record=True, force_terminal=False)
        show(board, console)
        text = console.export_text()
        assert all(len(line) <= width for line in text.splitlines()), width
        for vision in ("timm:edgenext_xx_small", "mobilenetv3_large_100"):
            assert vision in text  # whole, on one line
        assert "R1 test (%)" in text and "THE FIX IS HERE" in text
        assert "every run: clip_text contrastive" in text
    console = Console(width=80, record=True, force_terminal=False)
    show(board, console)
    assert "left out at 80 columns" in console.export_text()
    narrow = fit(board, board.partitions()[0], 80)
    assert "seed" not in [str(c.header) for c in narrow.columns]
    wide = fit(board, board.partitions()[0], 80, wide=True)
    assert "finished at (UTC)" in [str(c.header) for c in wide.columns]
    chosen = fit(board, board.partitions()[0], 80, names=["model", "GMACs"])
    assert [str(c.header) for c in chosen.columns] == ["model", "GMACs"]


def test_distinguishing_names_show_what_differs_including_options():
    base = make_record(vision="resnet18")
    other = copy.deepcopy(base)
    other["components"]["fusion"]["options"] = {"embed_dim": 64}
    base["components"]["fusion"]["options"] = {"embed_dim": 128}
    names, shared = leaderboard.distinguishing_names([base, other])
    assert names == ["embed_dim=128", "embed_dim=64"] and "resnet18" in shared and "contrastive" in shared


def test_leaderboard_commands_read_the_folder_vlbench_run_writes_and_say_so(tmp_path, monkeypatch):
    assert run_command.DEFAULT_RESULTS == leaderboard.DEFAULT_RESULTS == folders.RESULTS
    monkeypatch.chdir(tmp_path)
    write(folders.RESULTS, make_record(cost=FULL_COST))
    code, text = _cli(["leaderboard", "show"])
    assert code == 0 and f"read 1 record file from {folders.RESULTS}/ (the default results folder" in text
    assert "has no records yet" not in text
    code, text = _cli(["leaderboard", "build"])
    assert code == 0 and (tmp_path / folders.LEADERBOARD_OUT / "index.html").is_file() and "parquet" not in text


def test_help_has_no_rest_markup_and_a_missing_subcommand_names_the_choices(capsys):
    with pytest.raises(SystemExit):
        cli.main(["check-plugin", "--help"])
    assert "``" not in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["leaderboard"])
    assert "{build,publish,show,validate}" in capsys.readouterr().err


def test_cost_retries_replace_a_noisy_block_with_the_first_quiet_one(tmp_path):
    results = tmp_path / "results"
    record = make_record("0000000000000001", cost=noisy_cost(("load", "spread")))
    write(results, record)
    quiet = FULL_COST | {"conditions": loaded() | {"problems": [], "noisy": False}}
    attempts = iter([noisy_cost(("runnable",)), quiet])

    class Run:
        suite, run_id, label = record["suite"], record["run_id"], record["label"]

    calls = []
    outcome = cost_retry.remeasure_noisy(
        [Run()], None, results, tmp_path, torch.device("cpu"), retries=3, say=calls.append, measure=lambda *args: next(attempts)
    )
    assert outcome == {record["run_id"]: True} and len(calls) == 3  # two attempts announced, then the outcome
    cost = read_record(results / record["suite"] / f"{record['run_id']}.json")["cost"]
    assert cost["conditions"]["noisy"] is False
    assert [(a["attempt"], a["noisy"], a["problems"]) for a in cost["retries"]] == [
        (0, True, "load, spread"),
        (1, True, "runnable"),
        (2, False, ""),
    ]
