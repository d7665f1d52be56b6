"""The conformance kit as a pytest plugin: fixtures and contract base classes.

Installing vlbench registers this module in pytest's ``pytest11`` entry-point group, so a
plugin author's tests get the fixtures with no conftest. Subclass one contract per component;
pytest collects the subclass (name it ``Test...``) and runs every inherited test::

    from vlbench.testing import VisionEncoderContract

    class TestTinyCNN(VisionEncoderContract):
        spec_name = "tiny_cnn"
        distribution = "vlbench-example-plugin"
        image_size = (64, 32)

Fixtures:

- ``vlbench_host``: a session :class:`~vlbench.manager.PluginHost` with every installed plugin
  (``VLBENCH_LOAD_PLUGINS`` / ``VLBENCH_BLOCK_PLUGINS`` apply) plus the mocks of
  :mod:`vlbench.testing.mocks` (``mock_vision``, ``mock_text``, ``mock_fusion``, ...).
- ``vlbench_tiny_run``: ``vlbench_tiny_run(vision=..., task=..., ...)`` runs
  :func:`vlbench.testing.tiny_suite.tiny_run` on that host in a fresh folder and returns the record.

Heavy imports stay inside fixtures and tests: pytest loads this plugin in every session of an
environment that has vlbench, including sessions that never touch it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

if TYPE_CHECKING:
    from vlbench.manager import PluginHost
    from vlbench.types.specs import ComponentSpec, DatasetSpec, FusionSpec, Kind, TaskSpec, TextEncoderSpec, VisionEncoderSpec


@pytest.fixture(scope="session")
def vlbench_host() -> PluginHost:
    """Installed plugins plus the kit's mocks, loaded once per session."""
    from vlbench.manager import PluginHost
    from vlbench.testing import mocks

    return PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks)])


@pytest.fixture
def vlbench_tiny_run(vlbench_host: PluginHost, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """A tiny suite through the real engine; keyword arguments as :func:`~vlbench.testing.tiny_suite.tiny_run`."""
    from vlbench.testing.tiny_suite import tiny_run

    folders = (tmp_path / f"run{i}" for i in itertools.count())
    return lambda **components: tiny_run(vlbench_host, next(folders), **components)


def assert_ok(record: Mapping[str, Any]) -> None:
    from vlbench.testing.tiny_suite import describe_failure

    assert record["status"] == "ok", describe_failure(record)


class ComponentContract:
    """Shared by every contract: the component is registered, from the right distribution,
    and no plugin of that distribution failed to load."""

    kind: ClassVar[Kind]
    spec_name: ClassVar[str]  # the registered name (or an open name a resolver understands)
    distribution: ClassVar[str] = ""  # when set, the spec must come from this installed distribution
    options: ClassVar[dict[str, Any]] = {}  # component options for the checks, over the spec's defaults

    @pytest.fixture
    def vlbench_spec(self, vlbench_host: PluginHost) -> ComponentSpec:
        return vlbench_host.get(self.kind, self.spec_name)

    def resolved_options(self, spec: ComponentSpec) -> dict[str, Any]:
        """What a suite would pass: the spec's defaults, overridden by ``options``."""
        return {**spec.options, **self.options}

    def test_registered(self, vlbench_host: PluginHost, vlbench_spec: ComponentSpec) -> None:
        from vlbench.checkplugin import normalize_distribution

        if self.distribution:
            assert normalize_distribution(vlbench_spec.distribution) == normalize_distribution(self.distribution), (
                f"{self.kind} {self.spec_name!r} comes from {vlbench_spec.distribution!r} (plugin {vlbench_spec.plugin!r}), "
                f"not {self.distribution!r}: is the package installed (pip install -e .) with its vlbench entry point?"
            )
        dist = normalize_distribution(vlbench_spec.distribution)
        broken = [f.describe() for f in vlbench_host.failures if normalize_distribution(f.distribution) == dist]
        assert not broken, "\n".join(broken)


class VisionEncoderContract(ComponentContract):
    kind = "vision"
    image_size: ClassVar[tuple[int, int] | None] = None  # None: the spec's default_image_size

    def test_contract(self, vlbench_spec: VisionEncoderSpec) -> None:
        from vlbench.testing.contracts import check_vision_encoder

        check_vision_encoder(vlbench_spec, image_size=self.image_size, **self.resolved_options(vlbench_spec))

    def test_end_to_end(self, vlbench_tiny_run: Callable[..., dict[str, Any]]) -> None:
        assert_ok(vlbench_tiny_run(vision=self.spec_name, image_size=self.image_size, options={"vision": self.options}))


class TextEncoderContract(ComponentContract):
    kind = "text"

    def test_contract(self, vlbench_spec: TextEncoderSpec) -> None:
        from vlbench.testing.contracts import check_text_encoder

        check_text_encoder(vlbench_spec, **self.resolved_options(vlbench_spec))

    def test_end_to_end(self, vlbench_tiny_run: Callable[..., dict[str, Any]]) -> None:
        assert_ok(vlbench_tiny_run(text=self.spec_name, options={"text": self.options}))


class FusionContract(ComponentContract):
    kind = "fusion"
    num_classes: ClassVar[int] = 5

    def test_contract(self, vlbench_host: PluginHost, vlbench_spec: FusionSpec) -> None:
        from vlbench.testing.contracts import check_fusion

        check_fusion(
            vlbench_spec,
            num_classes=self.num_classes,
            objectives=vlbench_host.objectives,
            kinds=vlbench_host.kinds,
            **self.resolved_options(vlbench_spec),
        )

    def test_end_to_end(self, vlbench_spec: FusionSpec, vlbench_tiny_run: Callable[..., dict[str, Any]]) -> None:
        from vlbench.testing.tiny_suite import mock_tasks_for_fusion

        tasks = [task for task in mock_tasks_for_fusion(vlbench_spec).values() if task]
        if not tasks:
            pytest.skip(f"no mock task exercises {sorted(vlbench_spec.objectives)} (uses_text={vlbench_spec.uses_text})")
        for task in tasks:
            text = "mock_text" if vlbench_spec.uses_text else None
            assert_ok(vlbench_tiny_run(fusion=self.spec_name, text=text, task=task, options={"fusion": self.options}))


class TaskContract(ComponentContract):
    kind = "task"
    best: ClassVar[float] = 100.0  # the main metric of a perfect model
    dataset: ClassVar[str] = "mock_dataset"  # for the end-to-end run; mock_dataset provides every field
    dataset_options: ClassVar[dict[str, Any]] = {}

    def test_contract(self, vlbench_spec: TaskSpec) -> None:
        from vlbench.testing.contracts import check_task

        check_task(vlbench_spec, best=self.best, **self.resolved_options(vlbench_spec))

    def test_end_to_end(self, vlbench_spec: TaskSpec, vlbench_tiny_run: Callable[..., dict[str, Any]]) -> None:
        from vlbench.testing.tiny_suite import MOCK_FUSION

        fusion, text = MOCK_FUSION.get(vlbench_spec.objective or "", (None, None))  # no objective: no fusion
        if vlbench_spec.objective is not None and fusion is None:
            pytest.skip(f"no mock fusion serves the {vlbench_spec.objective!r} objective")
        assert_ok(
            vlbench_tiny_run(
                task=self.spec_name,
                dataset=self.dataset,
                fusion=fusion,
                text=text,
                options={"task": self.options, "dataset": self.dataset_options},
            )
        )


class ComponentKindContract(ComponentContract):
    """A component of a kind a plugin registered (e.g. ``kind = "language_model"``): the kind's own
    contract check (``ComponentKind.check``)."""

    def test_contract(self, vlbench_host: PluginHost, vlbench_spec: ComponentSpec, tmp_path: Path) -> None:
        check = vlbench_host.kinds[self.kind].check
        if check is None:
            pytest.skip(f"the {self.kind} kind declares no contract check")
        check(vlbench_spec, tmp_path, **self.resolved_options(vlbench_spec))


class DatasetContract(ComponentContract):
    kind = "dataset"

    def test_contract(self, vlbench_spec: DatasetSpec, tmp_path: Path) -> None:
        from vlbench.testing.contracts import check_dataset

        check_dataset(vlbench_spec, tmp_path, **self.resolved_options(vlbench_spec))

    def test_end_to_end(self, vlbench_spec: DatasetSpec, vlbench_tiny_run: Callable[..., dict[str, Any]]) -> None:
        from vlbench.testing.tiny_suite import mock_task_for

        task = mock_task_for(vlbench_spec)
        if task is None:
            pytest.skip(f"no mock task reads only {sorted(vlbench_spec.provides)}")
        assert_ok(vlbench_tiny_run(task=task, dataset=self.spec_name, options={"dataset": self.options}))
