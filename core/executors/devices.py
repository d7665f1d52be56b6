"""``--executor devices``: one worker process per device on this machine.

Each device gets its own single-process pool (standard library ``ProcessPoolExecutor`` with
a spawn context) pinned with ``CUDA_VISIBLE_DEVICES`` and its share of the CPU cores, and
runs one run at a time, so cost measurements stay valid. A feeder thread per device hands
its pool the next pending run; because each pool runs exactly one run at a time, a worker
that dies (killed, out of memory, a crash in native code) is known to have died in that run,
which gets an error record, and the device goes on with a fresh worker.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing import get_context
from typing import Any

from vlbench.data import usable_cpu_count
from vlbench.engine import Reporter, SuiteOutcome
from vlbench.errors import UserError
from vlbench.executors._common import Done, Job, WorkerDied, merge, run_claimed, tally, worker_host
from vlbench.results import to_dict, write_record
from vlbench.run_record import error_record
from vlbench.types.runs import RunSpec


def parse_devices(text: str, cuda_count: Callable[[], int]) -> list[str]:
    """``all`` (every CUDA device), or a comma list of ``cuda:N`` / ``cpu``; a UserError otherwise."""
    if text.strip() == "all":
        count = cuda_count()
        if count == 0:
            raise UserError("--devices all: torch sees no CUDA device on this machine. Name the devices, e.g. --devices cpu,cpu.")
        return [f"cuda:{i}" for i in range(count)]
    devices = [part.strip() for part in text.split(",")]
    for device in devices:
        if device == "cpu":
            continue
        kind, _, index = device.partition(":")
        if kind != "cuda" or not index.isdigit():
            raise UserError(
                f"--devices {text}: {device!r} is not a device; use cuda:N or cpu, comma-separated (e.g. cuda:0,cuda:1), or all."
            )
        count = cuda_count()
        if int(index) >= count:
            raise UserError(
                f"--devices {text}: {device} does not exist; torch sees {count} CUDA device(s) here"
                f"{f' (cuda:0..cuda:{count - 1})' if count else ''}. Use --devices all or existing indices."
            )
    if len({d for d in devices if d != "cpu"}) != len([d for d in devices if d != "cpu"]):
        raise UserError(f"--devices {text}: a CUDA device is named twice; each device runs one run at a time, so name it once.")
    return devices


@dataclass(frozen=True)
class _Slot:
    device: str  # "cpu" or "cuda:N" (physical index)
    cpus: tuple[int, ...]  # the cores this worker may use; () = all
    threads: int


def _slots(devices: Sequence[str]) -> list[_Slot]:
    """Each worker gets an equal, disjoint share of the usable cores (when there are enough)
    and as many torch threads, so N workers do not oversubscribe the CPU."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    share = max(1, (len(cpus) or usable_cpu_count()) // len(devices))
    slots = []
    for i, device in enumerate(devices):
        mine = tuple(cpus[i * share : (i + 1) * share]) if len(cpus) >= len(devices) else ()
        slots.append(_Slot(device, mine, share))
    return slots


def _pin(slot: _Slot) -> None:
    """Worker initializer: runs in the fresh process before any run, before CUDA starts."""
    os.environ["CUDA_VISIBLE_DEVICES"] = slot.device.partition(":")[2] if slot.device.startswith("cuda") else ""
    os.environ["OMP_NUM_THREADS"] = str(slot.threads)
    if slot.cpus:
        os.sched_setaffinity(0, slot.cpus)
    import torch

    torch.set_num_threads(slot.threads)


def _work(run: RunSpec, job: Job) -> Done:
    return run_claimed(run, replace(job, executor={**job.executor, "worker_pid": os.getpid()}), worker_host())


class DevicesExecutor:
    name = "devices"

    def __init__(self, devices: Sequence[str]):
        self.devices = list(devices)

    def describe(self) -> str:
        return f"{len(self.devices)} worker processes ({', '.join(self.devices)})"

    def run(self, runs: Sequence[RunSpec], job: Job, host: Any, reporter: Reporter, warn: Callable[[str], Any]) -> SuiteOutcome:
        pending: queue.SimpleQueue[RunSpec] = queue.SimpleQueue()
        for run in runs:
            pending.put(run)
        finished: queue.SimpleQueue[Done] = queue.SimpleQueue()
        stop = threading.Event()
        slots = _slots(self.devices)
        feeders = [
            threading.Thread(
                target=self._feed, args=(slot, pending, finished, stop, job, host), daemon=True, name=f"vlbench-{slot.device}"
            )
            for slot in slots
        ]
        for feeder in feeders:
            feeder.start()
        outcome = SuiteOutcome()
        try:
            for _ in runs:
                done = finished.get()
                merge(outcome, done.outcome)
                if done.record is not None:
                    reporter.run_finished(done.record)
        finally:
            stop.set()  # on Ctrl-C the workers got the same SIGINT; feeders stop taking runs
        return outcome

    def _feed(
        self, slot: _Slot, pending: queue.SimpleQueue, finished: queue.SimpleQueue, stop: threading.Event, job: Job, host: Any
    ) -> None:
        context = get_context("spawn")  # a forked CUDA or OpenMP runtime is not safe to use
        job = replace(
            job,
            device="cuda" if slot.device.startswith("cuda") else "cpu",
            executor={
                **job.executor,
                "name": self.name,
                "device": slot.device,
                "workers": len(self.devices),
                "cpu_cores": len(slot.cpus) or None,
                "torch_threads": slot.threads,
            },
        )
        pool = ProcessPoolExecutor(1, mp_context=context, initializer=_pin, initargs=(slot,))
        try:
            while not stop.is_set():
                try:
                    run = pending.get_nowait()
                except queue.Empty:
                    return
                started = datetime.now(UTC).isoformat(timespec="seconds")
                try:
                    done = pool.submit(_work, run, job).result()
                except BrokenProcessPool:
                    pool.shutdown(wait=False)
                    pool = ProcessPoolExecutor(1, mp_context=context, initializer=_pin, initargs=(slot,))
                    done = self._died(run, job, host, started, slot)
                except KeyboardInterrupt:  # Ctrl-C reached the worker too: like local, an interrupted run has no record
                    done = Done(SuiteOutcome(), None)
                except BaseException as exc:  # the worker raised outside the engine's own handling
                    done = Done(SuiteOutcome(), None) if stop.is_set() else self._failed(run, job, host, started, exc)
                finished.put(done)
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _died(self, run: RunSpec, job: Job, host: Any, started: str, slot: _Slot) -> Done:
        error = WorkerDied(
            f"the worker process on {slot.device} died while running this run (killed, out of memory, "
            "or a crash in native code); the next `vlbench run` of this suite retries it"
        )
        return self._failed(run, job, host, started, error)

    def _failed(self, run: RunSpec, job: Job, host: Any, started: str, error: BaseException) -> Done:
        """The run's error record, written here (observers see it on the next resume)."""
        record = error_record(run, started, error, host, {"executor": job.executor})
        outcome = SuiteOutcome()
        tally(outcome, run.run_id, to_dict(record), write_record(record, job.results_dir))
        return Done(outcome, to_dict(record))
