"""Cost of a CNN + prefix-LM captioner (study 004), single vs multi visual tokens, side by side.

Loads the language model (timing the first load, which converts SmolLM2's GGUF into the
cache, and a second, cached load), counts parameters per component, then for each token
mode times at batch 1: the vision encoder, the projection, the LM prefill over the visual
prefix + BOS, and one greedy decode step through the KV cache (per-token latency). Medians
of ``--repeats`` calls after one warm-up; random-init vision weights (cost does not depend
on the values).

    python benchmarks/prefix_lm_cost.py --lm smollm2_135m --cache /tmp/vlbench-cache
    python benchmarks/prefix_lm_cost.py --lm tiny_llama
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import torch

from vlbench.cost import fingerprint
from vlbench.data import Precision
from vlbench.plugins.fusion._prefix_lm import PrefixLM
from vlbench.plugins.language_models import _loader
from vlbench.plugins.vision._timm import build_timm_encoder


def timed(fn, repeats: int) -> float:
    """Median milliseconds of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def load_lm(name: str, cache: Path, fresh: bool):
    if name == "tiny_llama":
        return (lambda: _loader.build_tiny_llama()), "random init, no conversion"
    if fresh:
        shutil.rmtree(cache / "language_models", ignore_errors=True)
    note = "first load converts the GGUF" if fresh else "converted folder kept: first load includes imports only"
    return (lambda: _loader.build_smollm2_135m(cache)), note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm", default="smollm2_135m", choices=["smollm2_135m", "tiny_llama"])
    parser.add_argument("--vision", default="mobilenetv3_large_100")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/vlbench-lm-cache"))
    parser.add_argument("--keep-cache", action="store_true", help="do not delete the converted LM first")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    build, note = load_lm(args.lm, args.cache, fresh=not args.keep_cache)
    start = time.perf_counter()
    lm = build()
    first = time.perf_counter() - start
    start = time.perf_counter()
    lm = build()
    cached = time.perf_counter() - start
    print(f"{args.lm}: first load {first:.1f} s ({note}), cached load {cached:.2f} s")
    print(f"  weights: {lm.provenance.get('weights')}; sha256 {lm.provenance.get('sha256', '-')}")

    encoder = build_timm_encoder(args.vision, (224, 224)).eval()
    images = torch.randn(1, 3, 224, 224)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    print(f"params: vision {args.vision} {count(encoder) / 1e6:.2f}M, language model {count(lm) / 1e6:.2f}M")
    print(
        f"{'tokens':<8}{'prefix':>7}{'proj params':>12}{'encoder ms':>12}{'project ms':>12}{'prefill ms':>12}{'decode ms/token':>17}"
    )
    with torch.inference_mode():
        features = encoder(images)
        for tokens in ("single", "multi"):
            fusion = PrefixLM(encoder.info, lm, tokens=tokens, max_length=32).eval()
            prefix = fusion.visual_prefix(features)
            bos = torch.full((1, 1), lm.special.bos)
            embeds = torch.cat([prefix, lm.embed(bos)], dim=1)
            mask = torch.ones(embeds.shape[:2], dtype=torch.bool)
            encoder_ms = timed(lambda: encoder(images), args.repeats)
            project_ms = timed(lambda fusion=fusion: fusion.visual_prefix(features), args.repeats)
            prefill_ms = timed(lambda embeds=embeds, mask=mask: lm(embeds, mask, use_cache=True), args.repeats)
            cache = lm(embeds, mask, use_cache=True).cache
            next_id = torch.full((1, 1), lm.special.eos)
            decode_mask = torch.ones(1, embeds.shape[1] + 1, dtype=torch.bool)

            def decode(next_id=next_id, decode_mask=decode_mask, cache=cache) -> None:
                lm(lm.embed(next_id), decode_mask, cache=cache, use_cache=True)
                cache.crop(-1)  # drop the token again, so every call decodes the same position

            decode_ms = timed(decode, args.repeats * 4)
            print(
                f"{tokens:<8}{fusion.prefix_length:>7}{count(fusion.project) / 1e6:>11.2f}M{encoder_ms:>12.1f}"
                f"{project_ms:>12.2f}{prefill_ms:>12.1f}{decode_ms:>17.1f}"
            )
    hardware = fingerprint(Precision(torch.device("cpu"), None, False))
    print(f"hardware: {hardware['cpu_model']}, {hardware['cpu_cores_usable']} usable cores, torch threads {args.threads}, fp32")


if __name__ == "__main__":
    main()
