"""Cost measurement: exact counts on tiny models, timm/fvcore agreement on real backbones,
the timing protocol, memory, fp16 size, and the invariants every cost block must meet."""

from __future__ import annotations

import copy
import time

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from vlbench import cost as vlcost
from vlbench.data import Precision
from vlbench.objectives import VLModel
from vlbench.plugins.vision._timm import build_timm_encoder
from vlbench.types import Batch, EncoderOutput, TextEncoder, TextInfo, TokenizedText, VisionEncoder, VisionInfo

CPU = Precision(torch.device("cpu"), None, False)
FAST = {"warmup": 1, "min_iters": 2}  # time_stage options that keep CPU tests short


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class TinyVision(VisionEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 4, stride=4)
        self.bn = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
        self.info = VisionInfo(
            token_dim=64, pooled_dim=64, input_size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, grid_size=(8, 8)
        )

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        tokens = self.conv2(F.relu(self.bn(self.conv1(images)))).flatten(2).transpose(1, 2)
        return EncoderOutput(tokens, tokens.mean(1))


class TinyText(TextEncoder):
    """Word ids by hashing; one transformer layer (its eval fast path hides matmuls from counters)."""

    def __init__(self, max_length: int = 6) -> None:
        super().__init__()
        self.embedding = nn.Embedding(4000, 64)
        self.layer = nn.TransformerEncoderLayer(64, 4, 128, batch_first=True)
        self.info = TextInfo(token_dim=64, pooled_dim=64, max_length=max_length)

    def tokenize(self, texts) -> TokenizedText:
        ids = torch.zeros(len(texts), self.info.max_length, dtype=torch.long)
        mask = torch.zeros(len(texts), self.info.max_length, dtype=torch.bool)
        for row, text in enumerate(texts):
            words = [sum(map(ord, w)) % 3999 + 1 for w in text.split()][: self.info.max_length]
            ids[row, : len(words)] = torch.tensor(words)
            mask[row, : len(words)] = True
        return TokenizedText(ids, mask)

    def forward(self, text: TokenizedText) -> EncoderOutput:
        tokens = self.layer(self.embedding(text.input_ids), src_key_padding_mask=~text.attention_mask)
        return EncoderOutput(tokens, tokens[:, 0], text.attention_mask)


class Contrastive(nn.Module):
    def __init__(self, image_dim: int = 64, text_dim: int = 64) -> None:
        super().__init__()
        self.image = nn.Linear(image_dim, 32)
        self.text = nn.Linear(text_dim, 32)
        self.scale = nn.Parameter(torch.tensor(2.0))

    def embed_image(self, out: EncoderOutput) -> torch.Tensor:
        return F.normalize(self.image(out.pooled), dim=-1)

    def embed_text(self, out: EncoderOutput) -> torch.Tensor:
        return F.normalize(self.text(out.pooled), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.scale.exp()


class LateConcat(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(128, 5)

    def forward(self, image: EncoderOutput, text: EncoderOutput | None) -> torch.Tensor:
        return self.head(torch.cat([image.pooled, text.pooled], dim=-1))


class Logits(nn.Module):
    """A 'fusion' that passes a plain classifier's logits through, to count bare timm models."""

    def forward(self, image: torch.Tensor, text: None) -> torch.Tensor:
        return image


def tiny_model(fusion: nn.Module | None = None) -> VLModel:
    torch.manual_seed(0)
    return VLModel({"vision": TinyVision(), "text": TinyText(), "fusion": fusion or Contrastive()}).eval()


# Multiply-adds of the tiny model at 32x32 and 6 tokens, by hand.
VISION_MACS = 32 * 8 * 8 * (3 * 4 * 4) + 64 * 8 * 8 * (32 * 3 * 3)
TEXT_MACS = 6 * 64 * 192 + 6 * 64 * 64 + 2 * 6 * 6 * 64 + 2 * 6 * 64 * 128  # qkv, out proj, QK^T + AV, FF
FUSION_MACS = 2 * 64 * 32


# ---------------------------------------------------------------- params and FLOPs


def test_params_per_component_trainable_and_frozen():
    model = tiny_model()
    model.text.requires_grad_(False)
    params = vlcost.parameter_counts(model)
    assert params["components"]["text"]["trainable"] == 0
    assert params["components"]["text"]["frozen"] == sum(p.numel() for p in model.text.parameters())
    assert params["total"]["total"] == sum(p.numel() for p in model.parameters())


def test_flops_and_macs_per_component_match_hand_counts():
    model = tiny_model()
    before = torch.backends.mha.get_fastpath_enabled()
    flops = vlcost.count_flops(model)
    assert torch.backends.mha.get_fastpath_enabled() == before
    parts = flops["components"]
    assert (parts["vision"]["macs"], parts["text"]["macs"], parts["fusion"]["macs"]) == (VISION_MACS, TEXT_MACS, FUSION_MACS)
    assert all(part["flops"] == 2 * part["macs"] for part in parts.values())
    assert flops["total"]["macs"] == VISION_MACS + TEXT_MACS + FUSION_MACS
    assert flops["input"] == {"image": [1, 3, 32, 32], "text_length": 6, "batch": 1}
    assert (flops["unit_flops"], flops["unit_macs"], flops["objective"]) == ("FLOPs", "MACs", "embedding")
    assert parts["vision"]["modules"] == {"conv1": 2 * 32 * 8 * 8 * 48, "conv2": 2 * 64 * 8 * 8 * 288}
    assert parts["text"]["modules"]["layer.self_attn"] == 2 * (6 * 64 * 192 + 6 * 64 * 64 + 2 * 6 * 6 * 64)
    assert parts["fusion"]["modules"] == {"image": 2 * 64 * 32, "text": 2 * 64 * 32}
    assert "aten._scaled_dot_product_flash_attention_for_cpu" in parts["text"]["ops"]


def test_flops_follow_input_shape_and_objective():
    model = tiny_model(LateConcat())
    flops = vlcost.count_flops(model, image_size=(64, 64), text_length=4, batch=2)
    assert flops["objective"] == "classification"
    assert flops["components"]["vision"]["macs"] == 2 * 4 * VISION_MACS
    assert flops["components"]["text"]["macs"] == 2 * (4 * 64 * 192 + 4 * 64 * 64 + 2 * 4 * 4 * 64 + 2 * 4 * 64 * 128)
    assert flops["components"]["fusion"]["macs"] == 2 * 128 * 5
    with pytest.raises(ValueError, match="max_length"):
        vlcost.count_flops(model, text_length=7)


# Published by timm (results/benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv): params (M), GMACs at 224.
TIMM_PUBLISHED = {
    "mobilenetv3_large_100": (5.48, 0.23),
    "efficientnet_b0": (5.29, 0.40),
    "resnet50": (25.56, 4.11),
    "convnext_tiny": (28.59, 4.47),
    "deit_tiny_patch16_224": (5.72, None),
}


@pytest.mark.parametrize("name", list(TIMM_PUBLISHED))
def test_backbone_counts_agree_with_fvcore_and_timm(name):
    with torch.device("meta"):  # values do not change what is counted: skip timm's init, seconds per model
        classifier = timm.create_model(name)
    classifier = classifier.to_empty(device="cpu").eval()
    with torch.no_grad():
        for tensor in (*classifier.parameters(), *classifier.buffers()):
            tensor.zero_()  # not left uninitialised: denormals would slow the CPU down
    flops = vlcost.count_flops(VLModel({"vision": classifier, "text": None, "fusion": Logits()}), image_size=(224, 224))
    macs = flops["components"]["vision"]["macs"]
    fvcore = vlcost.fvcore_macs(classifier, torch.randn(1, 3, 224, 224))
    assert abs(macs - fvcore["macs"]) / fvcore["macs"] <= vlcost.FVCORE_TOLERANCE

    params, gmacs = TIMM_PUBLISHED[name]
    assert (
        round(
            vlcost.parameter_counts(VLModel({"vision": classifier, "text": None, "fusion": Logits()}))["total"]["total"] / 1e6, 2
        )
        == params
    )
    if gmacs is not None:
        # timm's GMACs are fvcore's default total, which adds batch/layer norm at one per element:
        # like with like, our MACs plus those terms; bare MACs of the mobile nets sit 3.5-6% lower.
        assert abs((macs + sum(fvcore["excluded"].values())) / 1e9 - gmacs) / gmacs <= 0.03


def test_flops_of_an_attention_pool_head_and_requires_grad_kept():
    """SigLIP's head expands a learned query inside inference_mode; the counter must cope."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(
        img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, class_token=False, global_pool="map", num_classes=0
    ).eval()
    vit.pos_embed.requires_grad_(False)
    flops = vlcost.count_flops(VLModel({"vision": vit, "text": None, "fusion": Logits()}), image_size=(32, 32))
    assert flops["components"]["vision"]["flops"] > 0
    assert not vit.pos_embed.requires_grad and vit.attn_pool.latent.requires_grad


# ---------------------------------------------------------------- timing


def test_time_stage_spends_the_budget_but_never_fewer_than_the_minimums():
    fast = vlcost.time_stage(lambda: time.sleep(0.001), budget_s=0.1, warmup=2, min_iters=3)
    assert fast["warmup_iterations"] >= 2 and fast["iterations"] > 10
    assert 0 < fast["min_ms"] <= fast["p50_ms"] <= fast["p90_ms"] <= fast["p99_ms"]
    slow = vlcost.time_stage(lambda: time.sleep(0.01), budget_s=0.0, warmup=2, min_iters=3)
    assert (slow["warmup_iterations"], slow["iterations"]) == (2, 3) and slow["p50_ms"] >= 10
    capped = vlcost.time_stage(lambda: None, budget_s=1.0, warmup=1, min_iters=1, max_iters=50)
    assert capped["iterations"] == 50


class OutOfMemoryAbove(nn.Module):
    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if len(images) > self.limit:
            raise torch.OutOfMemoryError("simulated")
        return images.mean()


def test_throughput_halves_a_batch_that_does_not_fit():
    entries = vlcost.throughput(OutOfMemoryAbove(4), CPU, (8, 8), batch_sizes=(1, 16), budget_s=0.01, **FAST)
    assert [(e["requested_batch"], e["batch"], e["oom_batches"]) for e in entries] == [(1, 1, []), (16, 4, [16, 8])]
    assert entries[1]["images_per_s"] == pytest.approx(4e3 / entries[1]["mean_ms"])
    nothing = vlcost.throughput(OutOfMemoryAbove(0), CPU, (8, 8), batch_sizes=(2,), budget_s=0.01, **FAST)
    assert nothing == [{"requested_batch": 2, "batch": None, "oom_batches": [2, 1]}]


class VisionOutOfMemoryAbove(TinyVision):
    def forward(self, images: torch.Tensor) -> EncoderOutput:
        if len(images) > 2:
            raise torch.OutOfMemoryError("simulated")
        return super().forward(images)


def test_memory_figures_halve_a_batch_that_does_not_fit():
    model = VLModel({"vision": VisionOutOfMemoryAbove(), "text": TinyText(), "fusion": Contrastive()}).eval()
    inference = vlcost.inference_memory(model, CPU, batch=8)
    assert (inference["measured"], inference["batch"], inference["oom_batches"]) == (True, 2, [8, 4])
    training = vlcost.train_step_memory(model, CPU, batch=5)
    assert (training["measured"], training["batch"], training["oom_batches"]) == (True, 2, [5])


def test_stages_time_each_call_and_relate_batched_to_single():
    stages = {
        "query@1": vlcost.CostStage(lambda: time.sleep(0.004), items=1, unit="queries", group="query"),
        "query@4": vlcost.CostStage(lambda: time.sleep(0.008), items=4, unit="queries", group="query"),
        "gallery": vlcost.CostStage(lambda: time.sleep(0.002), items=8, unit="images"),
    }
    out = vlcost.run_stages(stages, CPU, budget_s=0.05, **FAST)
    assert out["query@4"]["single_stage"] == "query@1"
    # sleep() never returns early, so the floors hold on a loaded CPU; overshoot makes any ratio possible.
    assert out["query@1"]["p50_ms"] >= 4.0 and out["query@4"]["p50_ms"] >= 8.0
    ratio = out["query@4"]["p50_ms"] / (4 * out["query@1"]["p50_ms"])
    assert out["query@4"]["batched_over_n_single"] == pytest.approx(ratio)
    assert "batched_over_n_single" not in out["gallery"] and out["gallery"]["items_per_s"] < 4000


# ---------------------------------------------------------------- memory and size


def test_cpu_peak_memory_sees_tensors_allocated_inside():
    def work() -> None:
        big = torch.ones(1_000_000)  # 4 MB, freed before returning
        (big * 2).sum()

    peak = vlcost.peak_memory(work, torch.device("cpu"))
    assert peak["measured"] and 8_000_000 <= peak["peak_bytes"] < 20_000_000


def test_train_step_memory_leaves_the_model_as_it_was():
    model = tiny_model()
    model.vision.requires_grad_(False)
    model.vision.eval()
    before = copy.deepcopy(model.state_dict())
    memory = vlcost.train_step_memory(model, CPU, batch=4)
    assert memory["measured"] and memory["batch"] == 4
    weights = 4 * sum(p.numel() for p in model.parameters())
    assert weights <= memory["baseline_bytes"] < weights + 1_000  # + BN buffers
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert memory["peak_above_baseline_bytes"] > 4 * 3 * trainable  # gradients and AdamW's two moments, then activations
    assert memory["peak_bytes"] == memory["baseline_bytes"] + memory["peak_above_baseline_bytes"]
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # incl. BN running stats
    assert all(p.grad is None for p in model.parameters()) and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.vision.parameters())

    def loss(m: VLModel, batch: Batch) -> torch.Tensor:
        return m.encode_image(batch.images).sum()

    batch = Batch(images=torch.randn(3, 3, 32, 32), text=None, identities=None, labels=None, index=torch.arange(3))
    task_step = vlcost.train_step_memory(model, CPU, loss_fn=loss, train_batch=batch)
    assert task_step["measured"] and task_step["batch"] == 3 and task_step["loss"] == "task loss on a training batch"


def test_fp16_size_is_two_bytes_per_parameter_and_counts_tied_weights_once():
    model = tiny_model()
    size = vlcost.fp16_size(model)
    assert abs(size["bytes"] - 2 * size["params"]) / size["bytes"] < vlcost.FP16_TOLERANCE
    assert size["mb"] == size["bytes"] / 1e6

    tied = nn.Sequential(nn.Embedding(4000, 64), nn.Linear(64, 4000, bias=False))
    tied[1].weight = tied[0].weight
    assert vlcost.fp16_size(tied)["bytes"] < 1.02 * 2 * 4000 * 64


# ---------------------------------------------------------------- the cost block


def test_measure_assembles_a_consistent_block_and_keeps_the_model():
    model = tiny_model()
    before = copy.deepcopy(model.state_dict())
    stages = {"image@1": vlcost.CostStage(lambda: model.encode_image(torch.randn(1, 3, 32, 32)), unit="images")}
    cost = vlcost.measure(model, CPU, batch_sizes=(1, 4), budget_s=0.01, stages=stages, **FAST)
    assert cost["problems"] == []
    assert set(cost) == {
        "params",
        "flops",
        "latency",
        "throughput",
        "memory",
        "fp16_size",
        "stages",
        "checks",
        "hardware",
        "problems",
        "conditions",
    }
    assert {"vision", "text", "model"} <= set(cost["latency"]) and cost["latency"]["batch"] == 1
    assert [e["batch"] for e in cost["throughput"]["batches"]] == [1, 4]
    assert cost["memory"]["inference"]["batch"] == 4 and cost["memory"]["train_step"]["measured"]
    assert cost["checks"]["fvcore_vision"]["macs"] == VISION_MACS
    assert cost["stages"]["image@1"]["iterations"] >= 2
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_measure_through_the_timm_plugin_adapter():
    torch.manual_seed(0)
    encoder = build_timm_encoder("mobilenetv3_small_100", (64, 64))
    model = VLModel({"vision": encoder, "text": TinyText(), "fusion": Contrastive(image_dim=encoder.info.pooled_dim)}).eval()
    cost = vlcost.measure(model, CPU, batch_sizes=(2,), budget_s=0.01, **FAST)
    assert cost["problems"] == []
    fvcore = cost["checks"]["fvcore_vision"]
    assert fvcore["measured"] and fvcore["macs"] == cost["flops"]["components"]["vision"]["macs"]
    assert cost["params"]["components"]["vision"]["total"] == sum(
        p.numel() for p in timm.create_model("mobilenetv3_small_100", num_classes=0).parameters()
    )


def test_invariants_catch_inconsistent_blocks():
    model = tiny_model()
    good = {
        "params": vlcost.parameter_counts(model),
        "flops": vlcost.count_flops(model),
        "fp16_size": vlcost.fp16_size(model),
        "latency": {"unit": "ms", "vision": {"p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0}},
        "checks": {"fvcore_vision": {"measured": True, "macs": VISION_MACS}},
    }
    assert vlcost.check_cost_invariants(good) == []

    def broken(change) -> list[str]:
        cost = copy.deepcopy(good)
        change(cost)
        return vlcost.check_cost_invariants(cost)

    assert any("params" in p for p in broken(lambda c: c["params"]["total"].update(total=1)))
    assert any("2 x MACs" in p for p in broken(lambda c: c["flops"]["components"]["text"].update(macs=1)))
    assert any("components sum" in p for p in broken(lambda c: c["flops"]["total"].update(flops=2, macs=1)))
    assert any("fp16_size" in p for p in broken(lambda c: c["fp16_size"].update(bytes=c["fp16_size"]["bytes"] * 2)))
    assert any("percentiles" in p for p in broken(lambda c: c["latency"]["vision"].update(p99_ms=0.5)))
    assert any("fvcore" in p for p in broken(lambda c: c["checks"]["fvcore_vision"].update(macs=VISION_MACS * 1.05)))
    assert any("malformed" in p for p in broken(lambda c: c["flops"].pop("total")))


def test_fingerprint_names_hardware_software_and_settings():
    found = vlcost.fingerprint(Precision(torch.device("cpu"), torch.bfloat16, True), compile_mode="max-autotune")
    assert found["device"] == "cpu" and found["cpu_model"] and found["cpu_cores"] >= 1
    assert (found["precision"], found["channels_last"], found["compile"]) == ("bf16", True, "max-autotune")
    assert found["torch"] == torch.__version__ and found["timm"] == timm.__version__
