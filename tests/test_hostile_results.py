"""A results folder seeded with corrupt and hostile files: every reader skips what is not a
record with a warning naming it (never a traceback or a hang), and what it shows is safe for
terminals and spreadsheets."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from vlbench import cli
from vlbench.results import MAX_RECORD_BYTES, RecordError, finished_run_ids, read_record
from vlbench.sanitize import csv_cell, terminal_text

ESC = "\x1b"


def record(run_id: str, label: str = "net+text+fusion/task", status: str = "ok") -> dict:
    test = {"values": {"acc": 50.0}, "main": "acc", "chance": {"acc": 10.0}, "ci95": {}, "units": {}, "details": {}}
    return {
        "schema_version": 1,
        "run_id": run_id,
        "suite": "tiny",
        "label": label,
        "status": status,
        "error": None if status == "ok" else {"type": "RuntimeError", "message": f"boom {ESC}[2J{ESC}]0;pwned\x07"},
        "components": {
            "vision": {"name": label.split("+")[0], "plugin": "p.vision", "options": {}},
            "task": {"name": "person_search", "plugin": "p.task", "options": {}},
        },
        "config": {},
        "metrics": {"main": "acc", "higher_is_better": True, "splits": {"test": test, "val": test}} if status == "ok" else {},
        "selection": {},
        "cost": {},
        "training": {},
        "dataset": {"name": "synthetic_pedestrians"},
        "environment": {"device": "cpu"},
        "seed": 0,
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": "2026-01-01T00:01:00+00:00",
    }


@pytest.fixture
def hostile(tmp_path) -> Path:
    folder = tmp_path / "results" / "tiny"
    folder.mkdir(parents=True)
    (folder / "aaaaaaaaaaaaaaaa.json").write_text(json.dumps(record("aaaaaaaaaaaaaaaa", label='=HYPERLINK("http://x")+t+f/task')))
    (folder / "bbbbbbbbbbbbbbbb.json").write_text(json.dumps(record("bbbbbbbbbbbbbbbb", label=f"{ESC}[31mred{ESC}[0m+t+f/task")))
    (folder / "cccccccccccccccc.json").write_text(json.dumps(record("cccccccccccccccc", status="error")))
    (folder / "deep.json").write_text("[" * 1000 + "]" * 1000)  # 2 KB that crashed the readers
    (folder / "deep_but_parses.json").write_text(json.dumps(record("d"))[:-1] + ', "x": ' + "[" * 40 + "]" * 40 + "}")
    os.mkfifo(folder / "fifo.json")
    (folder / "dir.json").mkdir()
    (folder / "zero.json").symlink_to("/dev/zero")
    (folder / "huge.json").touch()
    os.truncate(folder / "huge.json", MAX_RECORD_BYTES + 1)
    (folder / "latin1.json").write_bytes(b'{"run_id": "\xff"}')
    (folder / "list.json").write_text("[1, 2]")
    (folder / "nan.json").write_text(json.dumps(record("e")).replace('"seed": 0', '"seed": NaN'))
    (folder / f"ctrl{ESC}[2J.json").write_text("{")
    return tmp_path / "results"


@pytest.fixture(autouse=True)
def no_hang():
    """A reader that blocks (a FIFO opened for reading) fails the test instead of hanging it."""

    def hung(*_):
        raise TimeoutError("a reader blocked")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    "name, problem",
    [
        ("deep.json", "nested too deeply"),
        ("deep_but_parses.json", "nested more than 32 levels"),
        ("fifo.json", "not a regular file"),
        ("dir.json", "not a regular file"),
        ("zero.json", "not a regular file"),
        ("huge.json", "over the 16 MiB"),
        ("latin1.json", "unreadable record"),
        ("list.json", "expected a JSON object"),
        ("nan.json", "not a finite number"),
    ],
)
def test_read_record_refuses_what_is_not_a_record(hostile, name, problem):
    with pytest.raises(RecordError) as info:
        read_record(hostile / "tiny" / name)
    assert str(info.value).startswith(str(hostile / "tiny" / name)) and problem in str(info.value)


def test_resume_skips_bad_files_with_a_warning_naming_each(hostile):
    warnings = []
    done = finished_run_ids(hostile, "tiny", warn=warnings.append)
    assert done == {"aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"}
    for name in ("deep.json", "fifo.json", "dir.json", "zero.json", "huge.json", "latin1.json", "list.json", "nan.json"):
        assert sum(name in w for w in warnings) == 1, warnings


def test_dry_run_on_a_hostile_folder_warns_and_shows_no_escape_codes(hostile, tmp_path, capsys):
    suite = tmp_path / "tiny.toml"
    suite.write_text(
        '[suite]\nname = "tiny"\n[[tasks]]\nname = "person_search"\n[[vision]]\nname = "mobilenetv3_small_100"\n'
        '[[text]]\nname = "clip_text"\n[[fusions]]\nname = "contrastive"\n'
    )
    code = cli.main(["run", str(suite), "--dry-run", "--results-dir", str(hostile)])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in out + err
    assert "fifo.json: not a regular file" in out and "deep.json: nested too deeply" in out
    assert ESC not in out


def test_leaderboard_show_and_build_skip_bad_files_and_neutralise_cells(hostile, tmp_path, capsys):
    (tmp_path / "none").mkdir()  # no suite files: no "missing runs" table
    code = cli.main(["leaderboard", "show", str(hostile), "--suites", str(tmp_path / "none")])
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in out + err, out + err
    assert ESC not in out and "\x07" not in out and "red" in out
    assert "fifo.json" in "".join(out.splitlines()) and "not a regular file" in out  # skipped files are listed by name

    site = tmp_path / "site"
    code = cli.main(["leaderboard", "build", str(hostile), "--out", str(site), "--suites", str(tmp_path / "none")])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "skipped" in out and "deep.json" in "".join(out.splitlines()) and ESC not in out
    csv = (site / "leaderboard.csv").read_text()
    assert "'=HYPERLINK" in csv and ",=HYPERLINK" not in csv and ESC not in csv


@pytest.mark.parametrize(
    "cell, shown",
    [
        ("=1+1", "'=1+1"),
        ("+cmd", "'+cmd"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("resnet50", "resnet50"),
        (-1.5, -1.5),
        (3, 3),
        (None, None),
    ],
)
def test_csv_cells_a_spreadsheet_would_evaluate_are_neutralised(cell, shown):
    assert csv_cell(cell) == shown


def test_terminal_text_drops_control_characters_but_keeps_text():
    assert terminal_text(f"a{ESC}[31mb{ESC}]0;title\x07c\x9bd\r\ne\tf") == "a[31mb]0;titlecd\ne\tf"
