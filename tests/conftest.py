"""Shared fixtures. Every test writes only under pytest's temporary folders: `vlbench run` (and the
TensorBoard observer it enables) would otherwise put TensorBoard files under ./runs of the checkout."""

import pytest
import torch


@pytest.fixture(autouse=True)
def runs_dir_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VLBENCH_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))


@pytest.fixture
def one_thread():
    """One torch thread: these models are tiny, and on a busy 2-core machine extra threads only
    spin at OpenMP barriers (a 5 ms forward then takes a second). Nothing tested with it depends
    on the thread count. Modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
