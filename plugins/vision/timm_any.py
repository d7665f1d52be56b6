"""Open names: ``timm:<model>`` gives any timm model (``timm:resnet18``,
``timm:vit_small_patch16_224.augreg_in21k``) through the same adapter as the built-ins.

Resolved on demand, so the registry does not list timm's thousand-plus models.
"""

from __future__ import annotations

import dataclasses
import difflib

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.plugins.vision._timm import timm_spec
from vlbench.types import VisionEncoderSpec

PREFIX = "timm:"


@hookimpl
def vlbench_resolve_vision_encoder(name: str) -> VisionEncoderSpec | None:
    """A spec named ``name`` for ``timm:<model>``; None for names without the prefix."""
    if not name.startswith(PREFIX):
        return None
    import timm

    model_name = name[len(PREFIX) :]
    arch, _, tag = model_name.partition(".")
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {' or '.join(repr(PREFIX + c) for c in close)}?" if close else ""
        raise UserError(
            f"vision encoder {name!r}: timm has no model {arch!r}.{hint} "
            f"`python -c \"import timm; print(timm.list_models('*{arch[:4]}*'))\"` lists the names."
        )
    if tag and model_name not in timm.list_pretrained(f"{arch}.*"):
        tags = [t.partition(".")[2] for t in timm.list_pretrained(f"{arch}.*")]
        raise UserError(
            f"vision encoder {name!r}: timm model {arch!r} has no pretrained tag {tag!r}; "
            f"its tags are {', '.join(tags) or 'none'}. Write {PREFIX + arch!r} for the default."
        )
    cfg = timm.models.get_pretrained_cfg(model_name)
    size: tuple[int, int] = tuple(cfg.input_size[-2:]) if cfg is not None else (224, 224)  # type: ignore[assignment]
    spec = timm_spec(model_name, "timm", f"timm model {model_name!r}, resolved from an open name", size)
    return dataclasses.replace(spec, name=name)  # the registry name keeps the prefix
