"""``clip_text``: CLIP's text transformer (open_clip's ``TextTransformer``) with the CLIP BPE
tokenizer that ships inside open_clip's wheel, so it works offline.

CLIP semantics: causal attention, ``pooled`` = the final-LayerNorm feature of the
end-of-text token. Under the causal mask no later position (padding) can change it.
``tokens`` are every position's feature; ``mask`` marks start, words and end-of-text.
CLIP's ``text_projection`` is not kept: fusions own their projections, so pooled is
``width`` wide.

Random init by default, shaped by ``width/layers/heads/context_length`` (CLIP ViT-B's text
tower by default). ``pretrained = true`` reads the text tower of open_clip model
``model_name`` with tag ``pretrained_tag`` from the local Hugging Face cache only; its shape
then comes from that model (``width/layers/heads`` are not used) and ``context_length`` may
be shorter than the model's (exact under the causal mask).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.pretrained import LOADED_BY_PLUGIN, WeightsSource
from vlbench.types import EncoderOutput, Register, TextEncoder, TextEncoderSpec, TextInfo, TokenizedText
from vlbench.weights import load_into, load_state_dict_file, strip_prefix

NAME = "clip_text"
CLIP_VOCAB_SIZE = 49408  # the BPE vocabulary open_clip.tokenize uses
PLAIN_TEXT_CFG = {"context_length", "vocab_size", "width", "heads", "layers", "mlp_ratio", "ls_init_value"}


class ClipTextEncoder(TextEncoder):
    """A causal ``TextTransformer`` (built without projection or pooling) + CLIP tokenizer."""

    def __init__(self, model: nn.Module, context_length: int) -> None:
        super().__init__()
        self.model = model
        width = int(model.width)  # type: ignore[arg-type]  # torch types Module attributes as Tensor | Module; open_clip's is an int
        self.info = TextInfo(token_dim=width, pooled_dim=width, max_length=context_length)

    def tokenize(self, texts: Sequence[str]) -> TokenizedText:
        import open_clip

        length = self.info.max_length
        ids = open_clip.tokenize(list(texts), context_length=length)
        # <end_of_text> has the largest id, so argmax finds it even when "!" (id 0 = pad) occurs.
        last = ids.argmax(dim=-1, keepdim=True)
        return TokenizedText(ids, torch.arange(length) <= last)

    def forward(self, text: TokenizedText) -> EncoderOutput:
        tokens = self.model(text.input_ids)  # pool_type="none": every position, after ln_final
        last = text.attention_mask.sum(dim=1) - 1  # the end-of-text position
        pooled = tokens[torch.arange(tokens.shape[0], device=tokens.device), last]
        return EncoderOutput(tokens=tokens, pooled=pooled, mask=text.attention_mask)


def build(
    pretrained: bool = False,
    weights: str | os.PathLike[str] | None = None,
    width: int = 512,
    layers: int = 12,
    heads: int = 8,
    context_length: int = 77,
    model_name: str = "ViT-B-32",
    pretrained_tag: str = "openai",
) -> ClipTextEncoder:
    """A CLIP text tower: random, from a local ``weights`` file (wins), or from the cache."""
    from open_clip.transformer import QuickGELU, TextTransformer

    if not isinstance(context_length, int) or context_length < 3:
        raise UserError(f"text encoder {NAME!r}: context_length must be an integer >= 3, got {context_length!r}.")
    source: str | os.PathLike[str] | None
    if pretrained and weights is None:
        shape, quick_gelu, source = _cached_text_tower(model_name, pretrained_tag)
        if context_length > shape["context_length"]:
            raise UserError(
                f"text encoder {NAME!r}: context_length {context_length} exceeds the "
                f"{shape['context_length']} positions of open_clip {model_name!r}; use at most that."
            )
    else:
        shape, quick_gelu, source = {"width": width, "layers": layers, "heads": heads}, False, weights
    for key in ("width", "layers", "heads"):
        if not isinstance(shape[key], int) or shape[key] < 1:
            raise UserError(f"text encoder {NAME!r}: {key} must be a positive integer, got {shape[key]!r}.")
    if shape["width"] % shape["heads"]:
        raise UserError(f"text encoder {NAME!r}: width {shape['width']} must be divisible by heads {shape['heads']}.")

    model = TextTransformer(
        context_length=context_length,
        vocab_size=CLIP_VOCAB_SIZE,
        width=shape["width"],
        heads=shape["heads"],
        layers=shape["layers"],
        mlp_ratio=shape.get("mlp_ratio", 4.0),
        ls_init_value=shape.get("ls_init_value"),
        act_layer=QuickGELU if quick_gelu else nn.GELU,
        output_dim=None,  # no text_projection: fusions own their projections
        pool_type="none",  # forward returns every position; pooling happens in ClipTextEncoder
    )
    if source is not None:
        _load_text_tower(model, Path(source), context_length)
    return ClipTextEncoder(model, context_length)


def _cached_text_tower(model_name: str, tag: str) -> tuple[dict[str, Any], bool, str]:
    """The tower's shape, whether it uses QuickGELU, and its locally cached checkpoint."""
    import open_clip
    from huggingface_hub import constants, try_to_load_from_cache

    config = open_clip.get_model_config(model_name)
    if config is None:
        close = difflib.get_close_matches(model_name, open_clip.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise UserError(f"text encoder {NAME!r}: open_clip has no model_name {model_name!r}.{hint}")
    text_cfg = dict(config["text_cfg"])
    extra = sorted(set(text_cfg) - PLAIN_TEXT_CFG)
    if extra or text_cfg.get("vocab_size", CLIP_VOCAB_SIZE) != CLIP_VOCAB_SIZE:
        raise UserError(
            f"text encoder {NAME!r}: open_clip {model_name!r} has no plain CLIP text tower "
            f"(its text_cfg sets {', '.join(extra) or 'another vocabulary'}); use a CLIP model_name "
            f"such as 'ViT-B-32', 'ViT-B-16' or 'ViT-L-14'."
        )
    pretrained_cfg = open_clip.get_pretrained_cfg(model_name, tag)
    if not pretrained_cfg:
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
        raise UserError(f"text encoder {NAME!r}: open_clip {model_name!r} has no pretrained_tag {tag!r}; its tags are {tags}.")
    quick_gelu = bool(config.get("quick_gelu") or pretrained_cfg.get("quick_gelu"))
    text_cfg.setdefault("context_length", 77)

    # Where open_clip downloads to: "org/repo/" (default file names) or "org/repo/file";
    # open_clip prefers a safetensors twin of a pickle file.
    repo, filename = os.path.split(pretrained_cfg["hf_hub"])
    candidates = _candidate_files(filename)
    for candidate in candidates:
        found = try_to_load_from_cache(repo, candidate)
        if isinstance(found, str):
            return text_cfg, quick_gelu, found
    raise UserError(
        f"text encoder {NAME!r}: pretrained = true needs open_clip's {model_name!r}/{tag!r} weights "
        f"in a local cache, and the encoder itself never downloads (an online `vlbench run` or `vlbench weights fetch SUITE` puts it there). Looked for {repo} ({' or '.join(candidates)}) "
        f"in the Hugging Face cache {constants.HF_HUB_CACHE}. Fix: on a machine with internet run "
        f"`python -c \"import open_clip; open_clip.create_model('{model_name}', pretrained='{tag}')\"` "
        f"and copy its Hugging Face cache here (or point HF_HOME at it), or set "
        f'`weights = "/path/to/checkpoint.safetensors"`, or use pretrained = false.'
    )


def weights_source(options: Mapping[str, Any]) -> WeightsSource:
    """The spec's weights source: the Hugging Face file open_clip downloads for ``model_name`` / ``pretrained_tag``."""
    import open_clip

    cfg = open_clip.get_pretrained_cfg(options.get("model_name", "ViT-B-32"), options.get("pretrained_tag", "openai"))
    repo, filename = os.path.split(cfg.get("hf_hub", "")) if cfg else ("", "")
    if not repo:
        return LOADED_BY_PLUGIN
    return WeightsSource.huggingface(repo, _candidate_files(filename))


def _candidate_files(filename: str) -> tuple[str, ...]:
    """open_clip's file names in a repo: its defaults, or the named file after its safetensors twin."""
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if not filename:
        return (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME)
    if filename.endswith((".bin", ".pth")):
        return (filename[:-4] + ".safetensors", filename)
    return (filename,)


def _load_text_tower(model: nn.Module, path: Path, context_length: int) -> None:
    """Load a text tower from a ``ClipTextEncoder.state_dict()``, a ``TextTransformer`` one
    or a whole open_clip CLIP checkpoint (its image tower and projections are skipped).

    A longer position table is cut to ``context_length``: under the causal mask the first
    positions never see the later ones, so this is exact.
    """
    state = strip_prefix(load_state_dict_file(path), "model.")
    if any(k.startswith("text.") for k in state):  # open_clip CustomTextCLIP checkpoints
        state = {k[len("text.") :]: v for k, v in state.items() if k.startswith("text.")}
    positions = state.get("positional_embedding")
    if positions is not None and positions.shape[0] > context_length:
        state["positional_embedding"] = positions[:context_length]
    load_into(
        model,
        state,
        what=f"text encoder {NAME!r} (a CLIP text transformer with these width/layers/heads/context_length)",
        source=f"file {path}",
        ignore=lambda k: k.startswith("visual.") or k in {"text_projection", "logit_scale", "logit_bias", "attn_mask"},
    )


@hookimpl
def vlbench_register_text_encoders(register: Register) -> None:
    register(
        TextEncoderSpec(
            name=NAME,
            factory=build,
            description="CLIP text transformer (open_clip, causal, BPE tokenizer); pooled = end-of-text "
            "feature; random init, weights = path, or pretrained from a local open_clip cache",
            options={
                "width": 512,
                "layers": 12,
                "heads": 8,
                "context_length": 77,
                "model_name": "ViT-B-32",
                "pretrained_tag": "openai",
            },
            weights_source=weights_source,
        )
    )
