"""The built-in encoders: the timm adapter, the open ``timm:`` names and the three text
encoders. Plugin hooks are called directly (no PluginHost); sizes are tiny to stay fast.

Generic contract checks over every registered name live in the contract tests; these
cover what is specific to each implementation: non-square sizes, widths, prefix tokens,
weight files, offline pretrained behaviour and text pooling.
"""

from __future__ import annotations

import importlib
import socket
from pathlib import Path
from types import ModuleType

import pytest
import timm
import torch
from safetensors.torch import save_file

from vlbench.errors import UserError
from vlbench.plugins.text import _tokenize, bert_mini, clip_text, minilm
from vlbench.plugins.vision import timm_any
from vlbench.plugins.vision._timm import TimmVisionEncoder, build_timm_encoder
from vlbench.types import ComponentSpec, TextEncoder, TokenizedText, VisionEncoderSpec

SIZE = (64, 32)  # non-square, a multiple of every registered model's stride

FAMILIES = {
    "mobilenet": {"mobilenetv3_small_100", "mobilenetv3_large_100", "mobilenetv2_100"},
    "efficientnet": {"efficientnet_b0", "efficientnet_b3", "tf_efficientnetv2_s", "tf_efficientnet_lite0"},
    "coatnet": {"coatnet_0_rw_224", "coatnet_nano_rw_224"},
    "fastvit": {"fastvit_t8", "fastvit_sa12"},
    "deit": {"deit_tiny_patch16_224", "deit_small_patch16_224"},
    "convnext": {"convnext_atto", "convnext_tiny"},
    "vit": {"vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_siglip_224"},
    "resnet": {"resnet50"},
}


def registered(module: ModuleType, hook: str) -> dict[str, ComponentSpec]:
    specs: list[ComponentSpec] = []
    getattr(module, hook)(specs.append)
    return {spec.name: spec for spec in specs}


def vision_spec(name: str) -> VisionEncoderSpec:
    for family in FAMILIES:
        module = importlib.import_module(f"vlbench.plugins.vision.{family}")
        specs = registered(module, "vlbench_register_vision_encoders")
        if name in specs:
            return specs[name]  # type: ignore[return-value]
    raise KeyError(name)


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection attempt fails loudly instead of hanging on a missing network."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a test tried to use the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture
def empty_caches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_network: None) -> Path:
    """Hugging Face and torch hub caches that hold nothing (whatever this machine has)."""
    import huggingface_hub.constants

    hf = tmp_path / "hf-cache"
    hf.mkdir()
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(hf))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    return hf


def outputs_equal(a: TimmVisionEncoder | TextEncoder, b: TimmVisionEncoder | TextEncoder, inputs: object) -> None:
    a.eval()
    b.eval()
    with torch.no_grad():
        out_a, out_b = a(inputs), b(inputs)
    torch.testing.assert_close(out_a.tokens, out_b.tokens)
    torch.testing.assert_close(out_a.pooled, out_b.pooled)


# ---------------------------------------------------------------- registration


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_family_registers_its_timm_names(family: str) -> None:
    module = importlib.import_module(f"vlbench.plugins.vision.{family}")
    specs = registered(module, "vlbench_register_vision_encoders")
    assert set(specs) == FAMILIES[family]
    for name, spec in specs.items():
        assert isinstance(spec, VisionEncoderSpec) and spec.family and spec.description
        assert timm.is_model(name)
        assert spec.default_image_size == tuple(timm.models.get_pretrained_cfg(name).input_size[1:])


# ---------------------------------------------------------------- timm adapter


@pytest.mark.parametrize(
    ("name", "token_dim", "pooled_dim", "prefix", "grid"),
    [
        ("mobilenetv3_large_100", 960, 1280, 0, (2, 1)),  # conv head: pooled wider than tokens
        ("deit_tiny_patch16_224", 192, 192, 1, (4, 2)),  # class token in front of 4x2 patches
        ("coatnet_nano_rw_224", 512, 512, 0, (2, 1)),  # needs img_size at build time
        ("fastvit_t8", 768, 768, 0, (2, 1)),  # rejects img_size, runs at any size
    ],
)
def test_non_square_tokens_and_pooled(name: str, token_dim: int, pooled_dim: int, prefix: int, grid: tuple[int, int]) -> None:
    encoder = vision_spec(name).factory(image_size=SIZE, pretrained=False, weights=None).eval()
    info = encoder.info
    assert (info.token_dim, info.pooled_dim, info.num_prefix_tokens, info.grid_size) == (token_dim, pooled_dim, prefix, grid)
    assert info.input_size == SIZE
    assert info.mean == tuple(timm.models.get_pretrained_cfg(name).mean)
    with torch.no_grad():
        out = encoder(torch.randn(2, 3, *SIZE))
    assert out.tokens.shape == (2, prefix + grid[0] * grid[1], token_dim)
    assert out.pooled.shape == (2, pooled_dim)
    assert out.mask is None


def test_cnn_tokens_are_the_feature_map_row_major() -> None:
    encoder = build_timm_encoder("resnet18", (96, 64)).eval()
    images = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        fmap = encoder.model.forward_features(images)  # [1, C, 3, 2]
        tokens = encoder(images).tokens
    assert encoder.info.grid_size == (3, 2)
    torch.testing.assert_close(tokens[0, 1], fmap[0, :, 0, 1])  # row 0, column 1
    torch.testing.assert_close(tokens[0, 2], fmap[0, :, 1, 0])  # row 1, column 0


def test_channels_last_input_gives_the_same_output() -> None:
    encoder = build_timm_encoder("mobilenetv3_small_100", SIZE).eval()
    images = torch.randn(2, 3, *SIZE)
    with torch.no_grad():
        plain = encoder(images)
        channels_last = encoder(images.contiguous(memory_format=torch.channels_last))
    for a, b in ((plain.tokens, channels_last.tokens), (plain.pooled, channels_last.pooled)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * a.abs().max().item())  # kernel order only


def test_size_the_model_cannot_run_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"coatnet_nano_rw_224.*\[100, 50\].*multiples of its total stride 32"):
        build_timm_encoder("coatnet_nano_rw_224", (100, 50))
    with pytest.raises(UserError, match="image_size"):
        build_timm_encoder("resnet18", (64, 0))


# ---------------------------------------------------------------- weights = "path"


@pytest.mark.parametrize("fmt", ["safetensors", "pt"])
def test_weights_file_round_trip(tmp_path: Path, fmt: str) -> None:
    source = build_timm_encoder("mobilenetv3_small_100", SIZE)
    path = tmp_path / f"backbone.{fmt}"
    state = source.model.state_dict()
    save_file(state, str(path)) if fmt == "safetensors" else torch.save(state, path)
    loaded = build_timm_encoder("mobilenetv3_small_100", SIZE, weights=path)
    outputs_equal(source, loaded, torch.randn(2, 3, *SIZE))


def test_weights_file_with_classifier_or_wrapper_prefix(tmp_path: Path) -> None:
    with_head = timm.create_model("resnet18", num_classes=10)  # a fine-tuned classifier
    torch.save(with_head.state_dict(), tmp_path / "classifier.pt")
    from_head = build_timm_encoder("resnet18", SIZE, weights=tmp_path / "classifier.pt")
    torch.testing.assert_close(from_head.model.conv1.weight, with_head.conv1.weight)

    save_file(from_head.state_dict(), str(tmp_path / "encoder.safetensors"))  # "model." keys
    again = build_timm_encoder("resnet18", SIZE, weights=tmp_path / "encoder.safetensors")
    outputs_equal(from_head, again, torch.randn(1, 3, *SIZE))


def test_vit_weights_from_another_size_are_resampled(tmp_path: Path) -> None:
    at_224 = build_timm_encoder("deit_tiny_patch16_224", (224, 224))
    save_file(at_224.model.state_dict(), str(tmp_path / "deit.safetensors"))
    small = build_timm_encoder("deit_tiny_patch16_224", SIZE, weights=tmp_path / "deit.safetensors")
    assert small.model.pos_embed.shape == (1, 1 + 4 * 2, 192)
    torch.testing.assert_close(small.model.cls_token, at_224.model.cls_token)


def test_bad_weights_files_are_user_errors(tmp_path: Path) -> None:
    other = tmp_path / "other.safetensors"
    save_file(timm.create_model("mobilenetv3_large_100", num_classes=0).state_dict(), str(other))
    with pytest.raises(UserError, match=r"mobilenetv3_small_100.*wrong shapes"):
        build_timm_encoder("mobilenetv3_small_100", SIZE, weights=other)

    partial = tmp_path / "partial.pt"
    state = build_timm_encoder("resnet18", SIZE).model.state_dict()
    del state["layer4.1.bn2.weight"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, partial)
    with pytest.raises(UserError, match=r"missing keys: layer4\.1\.bn2\.weight; unexpected keys: extra\.weight"):
        build_timm_encoder("resnet18", SIZE, weights=partial)

    pickled = tmp_path / "whole_model.pt"
    torch.save(build_timm_encoder("resnet18", SIZE).model, pickled)  # a module, so pickled code, not a state dict
    with pytest.raises(
        UserError, match=r"whole_model.pt holds pickled objects.*torch.save\(model.state_dict\(\), path\)"
    ) as refused:
        build_timm_encoder("resnet18", SIZE, weights=pickled)
    assert "weights_only=False" not in str(refused.value)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.pt"):
        build_timm_encoder("resnet18", SIZE, weights=garbage)
    with pytest.raises(UserError, match="does not exist"):
        build_timm_encoder("resnet18", SIZE, weights=tmp_path / "missing.safetensors")


# ---------------------------------------------------------------- pretrained = true, offline


def test_pretrained_without_cache_is_a_user_error(empty_caches: Path) -> None:
    with pytest.raises(UserError) as caught:
        build_timm_encoder("resnet18", SIZE, pretrained=True)
    message = str(caught.value)
    assert "resnet18" in message and "never downloads" in message and "weights = " in message
    assert str(empty_caches) in message


def test_pretrained_loads_from_the_local_hf_cache(empty_caches: Path) -> None:
    hub_id = timm.models.get_pretrained_cfg("resnet18").hf_hub_id  # e.g. timm/resnet18.a1_in1k
    repo = empty_caches / f"models--{hub_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    (repo / "snapshots" / "0123abcd").mkdir(parents=True)
    hub_model = timm.create_model("resnet18")  # with its 1000-class head, as on the hub
    save_file(hub_model.state_dict(), str(repo / "snapshots" / "0123abcd" / "model.safetensors"))

    encoder = build_timm_encoder("resnet18", SIZE, pretrained=True)
    torch.testing.assert_close(encoder.model.conv1.weight, hub_model.conv1.weight)

    (repo / "snapshots" / "0123abcd" / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(UserError, match=r"cached pretrained file .*model\.safetensors could not be loaded"):
        build_timm_encoder("resnet18", SIZE, pretrained=True)


def test_pretrained_text_encoders_without_cache_are_user_errors(empty_caches: Path) -> None:
    with pytest.raises(UserError, match=r"ViT-B-32.*never downloads"):
        clip_text.build(pretrained=True)
    with pytest.raises(UserError, match=r"prajjwal1/bert-mini.*never downloads.*weights = "):
        bert_mini.build(pretrained=True)


# ---------------------------------------------------------------- timm:<any>


def test_timm_open_names() -> None:
    assert timm_any.vlbench_resolve_vision_encoder("resnet18") is None
    spec = timm_any.vlbench_resolve_vision_encoder("timm:resnet18")
    assert isinstance(spec, VisionEncoderSpec) and spec.name == "timm:resnet18"
    encoder = spec.factory(image_size=SIZE, pretrained=False, weights=None)
    assert (encoder.info.token_dim, encoder.info.grid_size) == (512, (2, 1))

    with pytest.raises(UserError, match=r"'timm:resnet18'"):
        timm_any.vlbench_resolve_vision_encoder("timm:resnt18")
    with pytest.raises(UserError, match=r"no model 'nonexistent'"):
        timm_any.vlbench_resolve_vision_encoder("timm:nonexistent")
    with pytest.raises(UserError, match=r"no pretrained tag 'bogus'.*a1_in1k"):
        timm_any.vlbench_resolve_vision_encoder("timm:resnet18.bogus")


# ---------------------------------------------------------------- text encoders

TEXTS = ["a woman in a red coat with a black bag!", "a man", ""]


def with_noisy_padding(text: TokenizedText, high: int) -> TokenizedText:
    """The same texts with random ids in every padded position."""
    noise = torch.randint(1, high, text.input_ids.shape, generator=torch.Generator().manual_seed(0))
    return TokenizedText(torch.where(text.attention_mask, text.input_ids, noise), text.attention_mask)


def assert_padding_invariant(encoder: TextEncoder, text: TokenizedText, high: int) -> None:
    with torch.no_grad():
        clean, noisy = encoder(text), encoder(with_noisy_padding(text, high))
    torch.testing.assert_close(clean.pooled, noisy.pooled)
    torch.testing.assert_close(clean.tokens[text.attention_mask], noisy.tokens[text.attention_mask])


@pytest.fixture(scope="module")
def tiny_clip() -> clip_text.ClipTextEncoder:
    return clip_text.build(width=64, layers=2, heads=2, context_length=16).eval()


def test_clip_text_tokens_mask_and_pooling(tiny_clip: clip_text.ClipTextEncoder) -> None:
    text = tiny_clip.tokenize(TEXTS)
    assert text.input_ids.shape == (3, 16) and text.input_ids.dtype == torch.int64
    assert text.attention_mask.dtype == torch.bool
    assert text.attention_mask.sum(1).tolist() == [13, 4, 2]  # <start> ... "!" ... <end>
    with torch.no_grad():
        out = tiny_clip(text)
    assert out.tokens.shape == (3, 16, 64) and out.pooled.shape == (3, 64)
    torch.testing.assert_close(out.pooled[1], out.tokens[1, 3])  # the end-of-text feature
    assert_padding_invariant(tiny_clip, text, high=49406)


def test_clip_text_weights_from_a_full_clip_checkpoint(tmp_path: Path, tiny_clip: clip_text.ClipTextEncoder) -> None:
    longer = clip_text.build(width=64, layers=2, heads=2, context_length=16)
    state = dict(longer.model.state_dict())
    state |= {"visual.proj": torch.zeros(3), "text_projection": torch.zeros(64, 32), "logit_scale": torch.zeros(())}
    save_file(state, str(tmp_path / "clip.safetensors"))
    shorter = clip_text.build(weights=tmp_path / "clip.safetensors", width=64, layers=2, heads=2, context_length=8).eval()
    longer.eval()
    with torch.no_grad():  # the causal mask makes a shorter context exact for short texts
        torch.testing.assert_close(shorter(shorter.tokenize(["a man"])).pooled, longer(longer.tokenize(["a man"])).pooled)

    torch.save(tiny_clip.state_dict(), tmp_path / "tiny.pt")
    reloaded = clip_text.build(weights=tmp_path / "tiny.pt", width=64, layers=2, heads=2, context_length=16)
    outputs_equal(tiny_clip, reloaded, tiny_clip.tokenize(TEXTS))
    with pytest.raises(UserError, match="wrong shapes"):
        clip_text.build(weights=tmp_path / "tiny.pt", width=32, layers=2, heads=2, context_length=16)


def test_bert_mini_vocab_shapes_and_padding() -> None:
    encoder = bert_mini.build().eval()
    assert len(encoder.tokenizer) == 30522
    assert (encoder.info.token_dim, encoder.info.pooled_dim, encoder.info.max_length) == (256, 256, 32)
    text = encoder.tokenize(TEXTS)
    assert text.input_ids.shape == (3, 32) and text.attention_mask.sum(1).tolist() == [13, 4, 2]
    assert encoder.tokenizer.convert_ids_to_tokens(text.input_ids[1, :4].tolist()) == ["[CLS]", "a", "man", "[SEP]"]
    assert_padding_invariant(encoder, text, high=30522)
    with pytest.raises(UserError, match="max_length"):
        bert_mini.build(max_length=1000)


def test_bert_mini_loads_a_huggingface_mlm_checkpoint(tmp_path: Path) -> None:
    source = bert_mini.build(max_length=8)
    state = {f"bert.{k}": v for k, v in source.model.state_dict().items()}
    state |= {"cls.predictions.bias": torch.zeros(30522), "bert.pooler.dense.bias": torch.zeros(256)}
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = bert_mini.build(weights=tmp_path / "pytorch_model.bin", max_length=8)
    outputs_equal(source, loaded, source.tokenize(TEXTS))


@pytest.fixture(scope="module")
def minilm_encoder() -> _tokenize.BertTextEncoder:
    return minilm.build().eval()


def test_minilm_is_the_real_pretrained_model(minilm_encoder: _tokenize.BertTextEncoder) -> None:
    spec = registered(minilm, "vlbench_register_text_encoders")["all_minilm_l6_v2"]
    assert spec.pretrained_by_default  # type: ignore[attr-defined]
    assert (minilm_encoder.info.token_dim, minilm_encoder.info.max_length) == (384, 64)
    sentences = ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "The stock market fell sharply today."]
    text = minilm_encoder.tokenize(sentences)
    with torch.no_grad():
        pooled = torch.nn.functional.normalize(minilm_encoder(text).pooled, dim=-1)
        again = torch.nn.functional.normalize(minilm.build().eval()(text).pooled, dim=-1)
    torch.testing.assert_close(pooled, again)  # no random init anywhere
    similar, unrelated = float(pooled[0] @ pooled[1]), float(pooled[0] @ pooled[2])
    assert similar > 0.5 and unrelated < 0.2, (similar, unrelated)
    assert_padding_invariant(minilm_encoder, text, high=30522)


def test_minilm_random_init_has_the_same_architecture(minilm_encoder: _tokenize.BertTextEncoder) -> None:
    random = minilm.build(pretrained=False)
    shapes = {k: v.shape for k, v in random.model.state_dict().items()}
    assert shapes == {k: v.shape for k, v in minilm_encoder.model.state_dict().items()}
    assert not torch.equal(random.model.embeddings.word_embeddings.weight, minilm_encoder.model.embeddings.word_embeddings.weight)
