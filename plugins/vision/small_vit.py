"""``small_vit``: a ViT trained from scratch, every size an option, built on timm's VisionTransformer.

Study 003's encoders in these terms: the baseline ``depth=1, heads=1, width=512,
mlp_width=1024, act="relu", norm="post"`` (PyTorch's default post-norm encoder layer) and the
enhanced ``depth=6, heads=8, width=512, mlp_width=2048, patch_size=8, act="gelu",
norm="pre", weight_init="jax"`` (timm's "jax" scheme initialises linear layers Xavier-uniform)
on 32 x 64 composites. The input size comes from the suite's ``image_size``; the patch size
must divide both sides. Pooled = the class token after the final norm (timm's ``token`` pool).
There are no pretrained weights: ``pretrained = true`` is refused, ``weights`` loads a file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from torch import nn

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.plugins.vision._timm import TimmVisionEncoder, _describe, _load_weights
from vlbench.types import Register, VisionEncoderSpec

NAME = "small_vit"
DEFAULTS: dict[str, Any] = {
    "depth": 1,
    "heads": 1,
    "width": 512,
    "mlp_width": 1024,
    "patch_size": 8,
    "act": "gelu",
    "norm": "pre",
    "weight_init": "",
}
ACTS = {"gelu": nn.GELU, "relu": nn.ReLU}
NORMS = ("pre", "post")
WEIGHT_INITS = ("", "jax", "jax_nlhb", "moco")  # timm's schemes; "" = timm's default trunc-normal


def _check(
    image_size: Sequence[int],
    depth: int,
    heads: int,
    width: int,
    mlp_width: int,
    patch_size: int,
    act: str,
    norm: str,
    weight_init: str,
) -> None:
    where = f"vision encoder {NAME!r}: option"
    for key, value in (
        ("depth", depth),
        ("heads", heads),
        ("width", width),
        ("mlp_width", mlp_width),
        ("patch_size", patch_size),
    ):
        if value < 1:
            raise UserError(f"{where} {key}={value}; use a positive integer.")
    if width % heads:
        raise UserError(f"{where} heads={heads} does not divide width={width}; pick heads so that width / heads is whole.")
    if any(side % patch_size for side in image_size):
        raise UserError(
            f"{where} patch_size={patch_size} does not divide image_size {list(image_size)}; use a patch size "
            "that divides both sides (study 003: 8 on [32, 64])."
        )
    if act not in ACTS:
        raise UserError(f"{where} act={act!r}; use one of {sorted(ACTS)}.")
    if norm not in NORMS:
        raise UserError(f"{where} norm={norm!r}; use 'pre' (LayerNorm before attention/MLP) or 'post' (after the residual).")
    if weight_init not in WEIGHT_INITS:
        raise UserError(f"{where} weight_init={weight_init!r}; use one of {list(WEIGHT_INITS)}.")


def build(
    image_size: Sequence[int] = (32, 64),
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    **options: Any,
) -> TimmVisionEncoder:
    from timm.models.vision_transformer import Block, ResPostBlock, VisionTransformer

    opts = {**DEFAULTS, **options}
    unknown = sorted(set(opts) - set(DEFAULTS))
    if unknown:
        raise UserError(f"vision encoder {NAME!r}: unknown option(s) {unknown}; it accepts {sorted(DEFAULTS)}.")
    size = cast("tuple[int, int]", tuple(image_size))  # (height, width): the suite checks there are two
    _check(size, **opts)
    if pretrained:
        raise UserError(
            f"vision encoder {NAME!r} is trained from scratch and has no pretrained weights: set "
            'pretrained = false, or weights = "/path/to/file.safetensors" saved from the same options.'
        )
    model = VisionTransformer(
        img_size=size,
        patch_size=opts["patch_size"],
        embed_dim=opts["width"],
        depth=opts["depth"],
        num_heads=opts["heads"],
        mlp_ratio=opts["mlp_width"] / opts["width"],
        act_layer=ACTS[opts["act"]],
        block_fn=Block if opts["norm"] == "pre" else ResPostBlock,
        weight_init=opts["weight_init"],
        num_classes=0,
        global_pool="token",
    )
    if weights is not None:
        _load_weights(model, NAME, Path(weights))
    layout, info = _describe(model, NAME, size)
    return TimmVisionEncoder(model, layout, info)


@hookimpl
def vlbench_register_vision_encoders(register: Register) -> None:
    register(
        VisionEncoderSpec(
            name=NAME,
            factory=build,
            description="From-scratch ViT (timm VisionTransformer) with depth, heads, width, MLP width, patch, "
            "activation and pre/post norm as options; study 003's baseline and enhanced encoders",
            options=dict(DEFAULTS),
            default_image_size=(32, 64),
            family="ViT",
        )
    )
