"""The per-run claim every executor takes before a run: the one seam to the reliability
work's claims (issue 16), which replace this module when they land.

A claim is an exclusive, non-blocking ``filelock`` lock on
``<results>/<suite>/.claims/<run_id>.lock``. filelock locks with ``flock``, which the
operating system drops when the holder exits, however it exits (kill -9 included), so a
dead process never leaves a run claimed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from vlbench.types import RunSpec


@contextmanager
def claim(results_dir: Path, run: RunSpec) -> Iterator[bool]:
    """Yields True while this process holds ``run``; False when another process does."""
    path = Path(results_dir) / run.suite / ".claims" / f"{run.run_id}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
