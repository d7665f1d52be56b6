"""Per-run claims, crash leftovers, observer replay and the suite's behaviour around saving."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import torch
from test_hostile_results import record

from vlbench import cli, engine
from vlbench.claims import ClaimBoard, me
from vlbench.preflight import captions_at_limit
from vlbench.results import read_record
from vlbench.resume import clean_leftovers, mark_observed, replay_unobserved
from vlbench.suite import load_suite
from vlbench.types import Dataset, Split, TokenizedText

SUITE = """
[suite]
name = "tiny"
seeds = [0, 1, 2]
device = "cpu"
[[tasks]]
name = "person_search"
dataset_options = { identities = [4, 2, 2], image_size = [64, 32] }
[[vision]]
name = "timm:resnet10t"
image_size = [64, 32]
[[text]]
name = "clip_text"
options = { width = 32, layers = 1, heads = 2, context_length = 16 }
[[fusions]]
name = "contrastive"
"""


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def plant(board: ClaimBoard, run_id: str, **owner) -> Path:
    board.folder.mkdir(parents=True, exist_ok=True)
    path = board.folder / f"{run_id}.claim"
    path.write_text(json.dumps({**me().__dict__, **owner}))
    return path


def test_a_live_claim_excludes_everyone_else_until_released(tmp_path):
    board = ClaimBoard(tmp_path, "s")
    claim = board.try_claim("r1")
    assert claim is not None and claim.still_held()
    assert board.try_claim("r1") is None and board.holder("r1").pid == os.getpid()
    assert board.try_claim("r2") is not None  # claims are per run
    claim.release()
    assert board.holder("r1") is None and board.try_claim("r1") is not None


def test_claims_of_dead_or_reused_pids_and_silent_hosts_are_stale(tmp_path):
    board = ClaimBoard(tmp_path, "s", stale_after_s=60)
    plant(board, "dead", pid=dead_pid())
    plant(board, "reused", process_start="1")  # our pid, another process's start time
    quiet = plant(board, "quiet", host="elsewhere", pid=1)
    os.utime(quiet, (time.time() - 120, time.time() - 120))
    plant(board, "busy", host="elsewhere", pid=1)  # heartbeat fresh: alive
    assert set(board.live()) == {"busy"}
    taken = board.try_claim("dead")
    assert taken is not None and taken.still_held() and board.try_claim("busy") is None


def test_a_taken_over_claim_knows_it_is_no_longer_held(tmp_path):
    board = ClaimBoard(tmp_path, "s")
    claim = board.try_claim("r")
    plant(board, "r", token="someone-else")
    assert not claim.still_held()
    claim.release()  # leaves the other claim alone
    assert json.loads((board.folder / "r.claim").read_text())["token"] == "someone-else"


def test_a_held_claim_keeps_a_heartbeat(tmp_path):
    board = ClaimBoard(tmp_path, "s", heartbeat_s=0.05)
    path = board.folder / "r.claim"
    with board.try_claim("r"):
        os.utime(path, (0, 0))
        time.sleep(0.5)
        assert path.stat().st_mtime > time.time() - 5
    assert not path.exists()


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    results, cache = tmp_path / "results", tmp_path / "cache"
    board = ClaimBoard(results, "s")
    folder = results / "s"
    folder.mkdir(parents=True)
    (folder / ".0123456789abcdef.x1y2.tmp").write_text("{half")  # nobody claims that run
    live = board.try_claim("fedcba9876543210")
    (folder / ".fedcba9876543210.x1y2.tmp").write_text("{being written")
    old, fresh = cache / ".synthetic_pedestrians-aa.z.tmp", cache / ".synthetic_pedestrians-bb.z.tmp"
    old.mkdir(parents=True)
    fresh.mkdir()
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    warnings = []
    assert clean_leftovers(results, "s", board, cache, warnings.append) == 2
    assert not (folder / ".0123456789abcdef.x1y2.tmp").exists() and not old.exists()
    assert (folder / ".fedcba9876543210.x1y2.tmp").exists() and fresh.exists()
    assert "removed 2 temporary files" in warnings[0]
    live.release()


def test_observers_see_on_resume_the_records_they_never_saw(tmp_path):

    board = ClaimBoard(tmp_path, "tiny")
    (tmp_path / "tiny").mkdir()
    for run_id in ("a" * 16, "b" * 16):
        (tmp_path / "tiny" / f"{run_id}.json").write_text(json.dumps(record(run_id)))
    mark_observed(tmp_path, "tiny", "a" * 16)
    seen = []
    assert replay_unobserved(tmp_path, "tiny", {"a" * 16, "b" * 16, "c" * 16}, board, seen.append) == ["b" * 16]
    assert [r["run_id"] for r in seen] == ["b" * 16]
    assert replay_unobserved(tmp_path, "tiny", {"a" * 16, "b" * 16}, board, seen.append) == []  # once only


def test_error_records_name_plugin_distribution_and_version_and_are_0644(tmp_path, monkeypatch, host):
    (tmp_path / "s.toml").write_text(SUITE)
    suite = load_suite(tmp_path / "s.toml", host)

    def fail(*args, **kwargs):
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(engine, "execute", fail)
    outcome = engine.run_suite(suite.runs[:1], host, tmp_path / "results", tmp_path / "cache", torch.device("cpu"))
    path = outcome.records[0]
    record = read_record(path)
    assert record["status"] == "error"
    for kind in ("vision", "text", "fusion", "task", "dataset"):
        block = record["components"][kind]
        assert block["plugin"] and block["distribution"] == "vlbench" and block["version"], (kind, block)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not list((tmp_path / "results" / "tiny" / ".claims").glob("*.claim"))  # released


def test_a_write_failure_mid_suite_stops_it_naming_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(SUITE)
    monkeypatch.setattr(engine, "execute", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("fails fast")))
    real_write, calls = engine.write_record, []

    def disk_full_on_second(record, results_dir):
        calls.append(record.run_id)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_write(record, results_dir)

    monkeypatch.setattr(engine, "write_record", disk_full_on_second)
    code = cli.main(["run", "s.toml", "--cache-dir", str(tmp_path / "cache"), "--runs-dir", ""])
    out, err = capsys.readouterr()
    assert code == 1 and "Traceback" not in out + err
    assert f"the result of run {calls[1]}" in err and "No space left on device" in err and "intact" in err
    saved = list((tmp_path / "runs" / "results" / "tiny").glob("*.json"))
    assert [p.stem for p in saved] == [calls[0]] and read_record(saved[0])["status"] == "error"  # the first is whole
    assert len(calls) == 2  # the third run never started


def test_captions_at_the_token_limit_are_counted():
    def tokenize(texts):
        lengths = [min(len(t.split()), 4) for t in texts]
        mask = torch.tensor([[i < n for i in range(4)] for n in lengths])
        return TokenizedText(input_ids=mask.long(), attention_mask=mask)

    split = Split("train", ("a", "b"), lambda i: None, captions=(("one two", "one two three four five six"), ("x y z w",)))
    dataset = Dataset("d", {"train": split, "val": split, "test": split})
    assert captions_at_limit(tokenize, dataset, chunk=1) == {"train": 2, "val": 2, "test": 2}


def test_claim_owner_names_this_host():
    assert me().host == socket.gethostname() and me().pid == os.getpid()


def test_the_claims_folder_lives_beside_the_records_and_is_ignored_by_git():
    ignored = (Path(__file__).parents[1] / ".gitignore").read_text().split()
    assert ".claims/" in ignored and ".observed/" in ignored


def test_records_are_readable_by_all_whatever_the_umask(tmp_path):
    from vlbench.results import write_record
    from vlbench.types import ResultRecord

    old = os.umask(0o077)
    try:
        path = write_record(ResultRecord(**record("f" * 16)), tmp_path)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_dry_run_shows_runs_another_process_holds(tmp_path, monkeypatch, capsys, host):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(SUITE)
    run_id = load_suite(tmp_path / "s.toml", host).runs[1].run_id
    claim = ClaimBoard(tmp_path / "runs" / "results", "tiny").try_claim(run_id)
    assert cli.main(["run", "s.toml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"running (pid {os.getpid()} on" in out and out.count("pending") == 2
    claim.release()
