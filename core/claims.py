"""Per-run claims: which process trains a run, so N processes sharing one suite and results
folder train each run exactly once (the unit the scale-out executors hand out).

A claim is a small JSON file ``<results>/<suite>/.claims/<run_id>.claim`` naming its owner
(host, pid, the process's start time, a random token). A ``filelock.FileLock`` beside it makes
look-then-take atomic across processes (and hosts, where the shared file system honours
locks); the OS drops that lock when its holder dies, so it never needs cleaning. The claim
file outlives a ``kill -9``, so a claim is honoured only while its owner is alive: on the
same host the pid must exist with the same start time (a reused pid is not the owner); on
another host the owner's heartbeat (the file's mtime, touched every ``heartbeat_s``) must be
younger than ``stale_after_s``. A stale claim is taken over.

Use::

    board = ClaimBoard(results_dir, suite)
    claim = board.try_claim(run_id)      # None: a live process holds it
    if claim is not None:
        with claim:                      # released on exit, heartbeat while held
            if claim.still_held(): ...   # check again right before the work
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from vlbench.errors import VlbenchError

CLAIMS_FOLDER = ".claims"


class ClaimError(VlbenchError):
    """The claims folder could not be used (lock timed out, folder not writable)."""


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    process_start: str | None  # /proc/<pid>/stat start time; None where there is no /proc
    token: str  # unique per claim: tells this claim from a later one by the same process
    claimed_at: float

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


def _process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot): a reused pid has another."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22; the command name may hold spaces


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def me(token: str | None = None) -> Owner:
    pid = os.getpid()
    return Owner(socket.gethostname(), pid, _process_start(pid), token or uuid.uuid4().hex, time.time())


class ClaimBoard:
    """The claims of one suite's runs in one results folder."""

    def __init__(
        self, results_dir: Path, suite: str, stale_after_s: float = 600.0, heartbeat_s: float = 60.0, lock_timeout_s: float = 60.0
    ) -> None:
        self.folder = Path(results_dir) / suite / CLAIMS_FOLDER
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.lock_timeout_s = lock_timeout_s

    def _paths(self, run_id: str) -> tuple[Path, Path]:
        return self.folder / f"{run_id}.claim", self.folder / f"{run_id}.lock"

    def _mutex(self, run_id: str) -> FileLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        return FileLock(self._paths(run_id)[1], timeout=self.lock_timeout_s)

    def holder(self, run_id: str) -> Owner | None:
        """The live owner of ``run_id``'s claim; None when it is free or stale."""
        path = self._paths(run_id)[0]
        owner = _read(path)
        return owner if owner is not None and self._alive(owner, path) else None

    def live(self) -> dict[str, Owner]:
        """run id -> live owner, for every claim in the folder."""
        if not self.folder.is_dir():
            return {}
        found = {path.stem: self.holder(path.stem) for path in self.folder.glob("*.claim")}
        return {run_id: owner for run_id, owner in found.items() if owner is not None}

    def try_claim(self, run_id: str) -> Claim | None:
        """Take ``run_id`` unless a live process holds it; never waits for the run itself."""
        path = self._paths(run_id)[0]
        owner = me()
        try:
            with self._mutex(run_id):
                held = _read(path)
                if held is not None and self._alive(held, path):
                    return None
                _write(path, owner)
        except Timeout:
            raise ClaimError(
                f"{self._paths(run_id)[1]}: lock not free after {self.lock_timeout_s:.0f} s; "
                "another process hangs while holding it: stop it or delete the file."
            ) from None
        return Claim(self, run_id, owner)

    def _alive(self, owner: Owner, path: Path) -> bool:
        if owner.host == socket.gethostname():
            if not _pid_alive(owner.pid):
                return False
            start = _process_start(owner.pid)
            return start is None or owner.process_start is None or start == owner.process_start
        try:
            age = time.time() - path.stat().st_mtime
        except OSError:
            return False
        return age < self.stale_after_s


class Claim:
    """A held claim: a context manager that keeps a heartbeat and releases on exit."""

    def __init__(self, board: ClaimBoard, run_id: str, owner: Owner) -> None:
        self.board, self.run_id, self.owner = board, run_id, owner
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def still_held(self) -> bool:
        """True while the claim file still names this claim (nobody took it over)."""
        held = _read(self.board._paths(self.run_id)[0])
        return held is not None and held.token == self.owner.token

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        path = self.board._paths(self.run_id)[0]
        with self.board._mutex(self.run_id):
            if self.still_held():
                path.unlink(missing_ok=True)

    def _heartbeat(self) -> None:
        path = self.board._paths(self.run_id)[0]
        while not self._stop.wait(self.board.heartbeat_s):
            try:
                os.utime(path)
            except OSError:  # taken over or folder gone: still_held() will say so
                return

    def __enter__(self) -> Claim:
        self._beat = threading.Thread(target=self._heartbeat, name=f"claim-{self.run_id}", daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _read(path: Path) -> Owner | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Owner(**{k: data[k] for k in Owner.__dataclass_fields__})
    except (OSError, ValueError, KeyError, TypeError):  # absent, or half-written by a killed writer: free
        return None


def _write(path: Path, owner: Owner) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(owner), f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
