"""Contract tests over the whole registry: a component is tested by being registered."""

from __future__ import annotations

import pytest

from vlbench.manager import PluginHost
from vlbench.testing.contracts import check_fusion, check_task, check_text_encoder, check_vision_encoder

HOST = PluginHost()  # at import, not the conftest fixture: the parametrize lists below come from the registry

# Small enough to be quick on a CPU, large enough for every family's downsampling.
SMALL_IMAGE = (64, 64)
SMALL_TEXT = {"clip_text": {"width": 64, "layers": 2, "heads": 2}}


@pytest.mark.parametrize("name", sorted(HOST.specs("vision")))
def test_vision_encoder_contract(name):
    check_vision_encoder(HOST.get("vision", name), image_size=SMALL_IMAGE)


def test_open_timm_name_contract():
    check_vision_encoder(HOST.get("vision", "timm:resnet18"), image_size=SMALL_IMAGE)


@pytest.mark.parametrize("name", sorted(HOST.specs("text")))
def test_text_encoder_contract(name):
    check_text_encoder(HOST.get("text", name), **SMALL_TEXT.get(name, {}))


@pytest.mark.parametrize(("name", "objective"), sorted((n, o) for n, s in HOST.specs("fusion").items() for o in s.objectives))
def test_fusion_contract_for_every_objective_it_declares(name, objective):
    check_fusion(HOST.get("fusion", name), objectives=HOST.objectives, only=objective, kinds=HOST.kinds)


@pytest.mark.parametrize("name", sorted(HOST.specs("task")))
def test_task_contract(name):
    check_task(HOST.get("task", name))
