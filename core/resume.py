"""What a suite does before its first run, after a crash or ``kill -9`` of an earlier process:
remove the temporary files the dead process left, and show observers the records they never
saw (a process killed between writing a record and calling its observers)."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlbench.claims import ClaimBoard
from vlbench.results import RecordError, read_record

OBSERVED_FOLDER = ".observed"  # <results>/<suite>/.observed/<run_id>: observers have seen that record
CACHE_TEMP_AGE_S = 3600.0  # a cache being generated touches its folder far more often than this
_RECORD_TEMP = re.compile(r"^\.(?P<run_id>[0-9a-f]+)\..*\.tmp$")  # results.write_record's temp names


def clean_leftovers(results_dir: Path, suite: str, board: ClaimBoard, cache_dir: Path, warn: Callable[[str], Any]) -> int:
    """Delete temp records whose run no live process claims (their writer is gone), claim
    temp files of dead writers, and cache temp folders untouched for CACHE_TEMP_AGE_S
    (dataset plugins generate into ``.<name>.<random>.tmp`` and rename when complete).
    Returns how many were removed."""
    removed = 0
    live = board.live()
    folder = Path(results_dir) / suite
    temps = list(folder.glob(".*.tmp")) if folder.is_dir() else []
    temps += list(board.folder.glob(".*.tmp")) if board.folder.is_dir() else []
    for path in temps:
        match = _RECORD_TEMP.match(path.name)
        owner_gone = (match is not None and match["run_id"] not in live) or (path.parent == board.folder and _older(path, 60.0))
        if owner_gone and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    cache = Path(cache_dir)
    for path in cache.glob(".*.tmp") if cache.is_dir() else []:
        if path.is_dir() and not path.is_symlink() and _older(path, CACHE_TEMP_AGE_S):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    if removed:
        warn(f"removed {removed} temporary files left by interrupted runs")
    return removed


def _older(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.lstat().st_mtime > seconds
    except OSError:
        return False


def mark_observed(results_dir: Path, suite: str, run_id: str) -> None:
    folder = Path(results_dir) / suite / OBSERVED_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    (folder / run_id).touch()


def replay_unobserved(
    results_dir: Path, suite: str, run_ids: set[str], board: ClaimBoard, notify: Callable[[dict[str, Any]], None]
) -> list[str]:
    """Call ``notify`` (the observers) with every record of ``run_ids`` on disk that has no
    observed mark and whose run no live process holds (it may be about to notify itself)."""
    live = board.live()
    observed = Path(results_dir) / suite / OBSERVED_FOLDER
    replayed = []
    for run_id in sorted(run_ids - set(live)):
        path = Path(results_dir) / suite / f"{run_id}.json"
        if (observed / run_id).exists() or not path.exists():
            continue
        try:
            record = read_record(path)
        except RecordError:
            continue
        notify(record)
        mark_observed(results_dir, suite, run_id)
        replayed.append(run_id)
    return replayed
