"""Conformance kit for plugin authors: contract checks, mocks and a pytest plugin.

- :mod:`vlbench.testing.contracts`: ``check_vision_encoder``, ``check_text_encoder``,
  ``check_fusion``, ``check_task``, ``check_dataset`` (plain functions, no pytest needed).
- :mod:`vlbench.testing.counting`: ``counting_forward_passes``, a module's forward calls during runs
  (the cost measurement left out), to show that a cache saves work.
- :mod:`vlbench.testing.mocks`: the mock plugin (random components, coded data), with the
  oracle/random models and ``tiny_run`` importable from it (:mod:`~vlbench.testing.mock_models`,
  :mod:`~vlbench.testing.mock_tasks`, :mod:`~vlbench.testing.tiny_suite`).
- :mod:`vlbench.testing.plugin`: the pytest plugin (fixtures) and the contract base classes,
  also importable from here: ``from vlbench.testing import VisionEncoderContract``.
"""

from __future__ import annotations

from typing import Any

_CONTRACTS = (
    "ComponentContract",
    "VisionEncoderContract",
    "TextEncoderContract",
    "FusionContract",
    "TaskContract",
    "DatasetContract",
    "ComponentKindContract",
)


def __getattr__(name: str) -> Any:
    # Resolved on first use, so `vlbench check-plugin` (contracts and mocks only) runs without pytest installed.
    if name in _CONTRACTS:
        from vlbench.testing import plugin

        return getattr(plugin, name)
    raise AttributeError(f"module 'vlbench.testing' has no attribute {name!r}")
