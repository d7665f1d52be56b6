"""Every test writes only under pytest's temporary folders: `vlbench run` (and the TensorBoard
observer it enables) would otherwise put TensorBoard files under ./runs of the checkout."""

import pytest


@pytest.fixture(autouse=True)
def runs_dir_in_tmp(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("VLBENCH_RUNS_DIR", str(tmp_path_factory.mktemp("runs")))
