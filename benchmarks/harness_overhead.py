"""vlbench's throughput figure against a bare timm inference loop, side by side.

For every backbone, in one process: the vision encoder as its vlbench plugin builds it, timed
by ``vlbench.cost.throughput``, and the same timm model (the plugin's ``.model``, so the
same weights and memory) in the loop of timm's benchmark.py: warm-up, then steps timed one by
one with the device synchronised after each, under inference mode with the same input size,
batch, autocast dtype and memory format. The bare loop runs as many warm-up and timed steps
as vlbench's measurement just did. Rounds alternate which of the two goes first; the ratio is
the median over rounds of vlbench img/s / bare img/s (target >= 0.97); ``ratio p50`` is the
same from each side's median step, which a busy machine disturbs less.

    python benchmarks/harness_overhead.py                      # every built-in backbone
    python benchmarks/harness_overhead.py --models resnet50 --device cuda --image-size 224 --batch-size 32
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

from vlbench import cost
from vlbench.data import Precision, resolve_precision
from vlbench.engine import resolve_device
from vlbench.manager import PluginHost

BACKBONES = (
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "mobilenetv2_100",
    "efficientnet_b0",
    "efficientnet_b3",
    "tf_efficientnetv2_s",
    "coatnet_0_rw_224",
    "coatnet_nano_rw_224",
    "fastvit_t8",
    "fastvit_sa12",
    "deit_tiny_patch16_224",
    "deit_small_patch16_224",
    "convnext_atto",
    "convnext_tiny",
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "resnet50",
)
TARGET = 0.97


def bare_timm_loop(model: nn.Module, images: torch.Tensor, precision: Precision, warmup: int, steps: int) -> list[float]:
    """Seconds per step as timm's benchmark.py takes them: warm-up, then each step timed with
    the device synchronised after it."""
    sync: Callable[[], None] = (
        (lambda: torch.cuda.synchronize(precision.device)) if precision.device.type == "cuda" else (lambda: None)
    )
    times = []
    with torch.inference_mode(), precision.autocast():
        for _ in range(warmup):
            model(images)
            sync()
        for _ in range(steps):
            start = time.perf_counter()
            model(images)
            sync()
            times.append(time.perf_counter() - start)
    return times


def compare(
    encoder: nn.Module, precision: Precision, size: tuple[int, int], batch: int, budget_s: float, rounds: int
) -> dict[str, float]:
    """Medians over rounds of both figures and of their per-round ratios: timm's (mean step)
    and the median step's, which a busy machine disturbs less."""
    images = torch.randn(batch, 3, *size, device=precision.device)
    if precision.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)

    def vlbench_figure() -> dict:
        entry = cost.throughput(encoder, precision, size, (batch,), budget_s)[0]
        if entry["batch"] != batch:
            raise SystemExit(f"batch {batch} does not fit; vlbench backed off to {entry['batch']}")
        return entry

    rows = []
    entry = vlbench_figure()  # unrecorded warm-up: the first calls build kernels
    for round_ in range(rounds):
        if round_ % 2:
            bare = bare_timm_loop(encoder.model, images, precision, entry["warmup_iterations"], entry["iterations"])
            entry = vlbench_figure()
        else:
            entry = vlbench_figure()
            bare = bare_timm_loop(encoder.model, images, precision, entry["warmup_iterations"], entry["iterations"])
        bare_mean = batch * len(bare) / sum(bare)
        bare_p50 = batch / statistics.median(bare)
        rows.append(
            {
                "vlbench": entry["images_per_s"],
                "timm": bare_mean,
                "ratio": entry["images_per_s"] / bare_mean,
                "ratio_p50": entry["images_per_s_p50"] / bare_p50,
                "iterations": entry["iterations"],
            }
        )
    return {key: statistics.median(row[key] for row in rows) for key in rows[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(BACKBONES), help="vision encoder names (default: the built-ins)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--image-size", type=int, default=None, help="square input side (default: 224 on CUDA, 96 on CPU)")
    parser.add_argument("--batch-size", type=int, default=None, help="default: 32 on CUDA, 4 on CPU")
    parser.add_argument(
        "--amp", default="auto", choices=("auto", "off", "bf16", "fp16"), help="autocast dtype, as in [train] amp"
    )
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument(
        "--budget-s", type=float, default=None, help="time budget of one vlbench figure (default: 2 on CUDA, 0.3 on CPU)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    size = args.image_size or (224 if cuda else 96)
    batch = args.batch_size or (32 if cuda else 4)
    budget = args.budget_s or (2.0 if cuda else 0.3)
    precision = resolve_precision(device, args.amp, args.channels_last)
    if cuda:
        torch.backends.cudnn.benchmark = True
    host = PluginHost()
    hardware = cost.fingerprint(precision)
    print(
        f"device {hardware['device_name']} ({hardware['torch_threads']} torch threads), torch {hardware['torch']}, "
        f"timm {hardware['timm']}, {precision.name}, channels_last={precision.channels_last}, "
        f"image {size}x{size}, batch {batch}, budget {budget} s, {args.rounds} interleaved rounds"
    )
    noop = cost.time_stage(lambda: None, 0.2, device=device)
    print(
        f"vlbench's timing loop costs {noop['p50_ms'] * 1e3:.2f} us per call (median over {noop['iterations']} calls of a no-op)"
    )
    print(f"{'model':<24} {'vlbench img/s':>14} {'timm img/s':>11} {'ratio':>6} {'ratio p50':>10} {'iters':>6}")
    below = []
    for name in args.models:
        spec = host.get("vision", name)
        encoder = spec.factory(image_size=(size, size), pretrained=False, weights=None).to(device).eval()
        if precision.channels_last:
            encoder.to(memory_format=torch.channels_last)
        row = compare(encoder, precision, (size, size), batch, budget, args.rounds)
        flag = "" if row["ratio"] >= TARGET else "  < target"
        print(
            f"{name:<24} {row['vlbench']:>14.1f} {row['timm']:>11.1f} {row['ratio']:>6.3f} {row['ratio_p50']:>10.3f} "
            f"{row['iterations']:>6.0f}{flag}",
            flush=True,
        )
        if row["ratio"] < TARGET:
            below.append(name)
        del encoder
    print(f"below {TARGET}: {', '.join(below) if below else 'none'}")


if __name__ == "__main__":
    main()
