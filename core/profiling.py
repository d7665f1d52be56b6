"""``vlbench run --profile``: torch.profiler traces of a few steps per run, for TensorBoard.

Traces go to ``<runs-dir>/<suite>/<run_id>/profile/`` through
``torch.profiler.tensorboard_trace_handler``, one ``<worker>.<time>.pt.trace.json`` per
profiled phase (``train``: forward, loss and backward on a real training batch; ``inference``:
the objective's forward). Open them with ``tensorboard --logdir runs`` and the
torch-tb-profiler plugin (``pip install -e .[profile]``), or in chrome://tracing / Perfetto.
Writing the traces needs neither package.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, schedule, tensorboard_trace_handler

WAIT, WARMUP, ACTIVE = 1, 1, 3  # the profiler's schedule: skipped, warm-up (not recorded), recorded steps


def profile_steps(
    step: Callable[[], object],
    out_dir: Path,
    worker: str,
    device: torch.device,
    wait: int = WAIT,
    warmup: int = WARMUP,
    active: int = ACTIVE,
) -> None:
    """Run ``step`` wait + warmup + active times under torch.profiler; the active steps are traced."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    with profile(
        activities=activities,
        schedule=schedule(wait=wait, warmup=warmup, active=active, repeat=1),
        on_trace_ready=tensorboard_trace_handler(str(out_dir), worker_name=worker),
        record_shapes=True,
        profile_memory=True,
    ) as prof:
        for _ in range(wait + warmup + active):
            step()
            sync()
            prof.step()


def profile_dir(runs_dir: Path, suite: str, run_id: str) -> Path:
    return Path(runs_dir) / suite / run_id / "profile"
