"""Embedding cache for frozen towers: what a frozen encoder outputs for an input is
computed once and reused by every later run, in this suite and in others.

An entry is one input row's :class:`EncoderOutput` (tokens, pooled, mask), addressed by the
SHA-256 of the *encoder key* and the row's bytes. The encoder key covers everything that
can change the output: component name, plugin, distribution and version, its options, a
hash of its weights as loaded, its preprocessing (the ``info`` it declares: normalisation,
input size, tokenizer length), the class that computes it, the autocast dtype, the device
type and the torch version. The row's bytes are what the tower receives (token ids and mask,
or normalised pixels), so a different tokenizer or transform is a different entry: keying on
the caption text alone serves another model's vectors (MTEB's lesson).

Entries live in a ``diskcache`` store (SQLite index, values as safetensors bytes, never
pickles) under ``<cache-dir>/embeddings`` with a size limit that evicts the least recently
used. ``VLBENCH_EMBEDDING_CACHE=off`` (``vlbench run --no-embedding-cache``) turns it off;
``VLBENCH_EMBEDDING_CACHE_GB`` sets the limit (default 20).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from vlbench.errors import UserError
from vlbench.types.encoders import EncoderOutput, TextEncoder, TokenizedText, VisionEncoder
from vlbench.types.runs import ComponentChoice
from vlbench.types.specs import ComponentSpec

if TYPE_CHECKING:
    from vlbench.objectives.model import VLModel

DEFAULT_SIZE_GB = 20.0
ENTRY_PREFIX = "row:"  # one input row's output
COMPONENT_PREFIX = "component:"  # what an encoder key stands for, for `vlbench cache info`


def enabled() -> bool:
    return os.environ.get("VLBENCH_EMBEDDING_CACHE", "on") != "off"


def folder(cache_dir: Path) -> Path:
    return Path(cache_dir) / "embeddings"


def size_limit_bytes() -> int:
    text = os.environ.get("VLBENCH_EMBEDDING_CACHE_GB", str(DEFAULT_SIZE_GB))
    try:
        gb = float(text)
    except ValueError:
        gb = -1.0
    if not gb > 0:
        raise UserError(f"VLBENCH_EMBEDDING_CACHE_GB={text!r}: give the embedding cache's size limit in GB, a positive number.")
    return int(gb * 1024**3)


def open_store(cache_dir: Path) -> Any:
    """The store, or a UserError when its folder cannot be written (checked before any run)."""
    import diskcache

    where = folder(cache_dir)
    try:
        where.mkdir(parents=True, exist_ok=True)
        probe = where / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return diskcache.Cache(str(where), size_limit=size_limit_bytes(), eviction_policy="least-recently-used")
    except OSError as exc:
        raise UserError(
            f"the embedding cache folder {where} cannot be written ({exc.strerror or exc}). Point --cache-dir "
            "(or VLBENCH_CACHE) at a writable folder, or run with --no-embedding-cache."
        ) from None


def weights_digest(module: nn.Module) -> str:
    """SHA-256 over every parameter and buffer as loaded (name, dtype, shape, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def encoder_identity(part: str, spec: ComponentSpec, choice: ComponentChoice, module: nn.Module) -> dict[str, Any]:
    info = getattr(module, "info", None)
    return {
        "kind": part,
        "name": spec.name,
        "plugin": spec.plugin,
        "distribution": spec.distribution,
        "version": spec.version,
        "options": {k: v for k, v in sorted(choice.options.items()) if k != "freeze"},
        "weights_sha256": weights_digest(module),
        "preprocessing": json.loads(json.dumps(dataclasses.asdict(info) if info is not None else {}, default=list)),
        "class": f"{type(module).__module__}.{type(module).__qualname__}",
        "torch": torch.__version__,
    }


def _rows(inputs: torch.Tensor | TokenizedText) -> Iterator[bytes]:
    """Each row's exact bytes, with dtype and shape, as the tower receives it."""
    tensors = [inputs.input_ids, inputs.attention_mask] if isinstance(inputs, TokenizedText) else [inputs]
    tensors = [t.detach().to("cpu").contiguous() for t in tensors]
    for i in range(len(tensors[0])):
        yield b"".join(f"{t.dtype}{tuple(t.shape[1:])}".encode() + t[i].view(torch.uint8).numpy().tobytes() for t in tensors)


def _select(inputs: torch.Tensor | TokenizedText, rows: list[int]) -> torch.Tensor | TokenizedText:
    index = torch.tensor(rows, device=(inputs.input_ids if isinstance(inputs, TokenizedText) else inputs).device)
    if isinstance(inputs, TokenizedText):
        return TokenizedText(inputs.input_ids[index], inputs.attention_mask[index])
    return inputs[index]


class CachedEncoder(nn.Module):
    """A frozen encoder behind the cache: rows seen before come from the store, the others
    are computed together in one call of the encoder and stored.

    The encoder stays in eval mode whatever mode the model is put in (as the trainer keeps
    every frozen tower), so its output for a row is fixed; a call that needs gradients
    through it (a tower that is not frozen after all) goes straight to the encoder."""

    def __init__(self, inner: nn.Module, identity: Mapping[str, Any], store: Any):
        super().__init__()
        self.inner: Any = inner.eval()  # a vision or text encoder (the protocols are not nn.Module subclasses)
        self.info = inner.info
        self.identity = dict(identity)
        self.key = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()
        self.store = store
        self.hits = 0
        self.computed = 0
        store.set(COMPONENT_PREFIX + self.key, json.dumps(self.identity, sort_keys=True).encode())

    def train(self, mode: bool = True) -> CachedEncoder:
        self.training = mode
        self.inner.eval()
        return self

    def tokenize(self, texts: Any) -> TokenizedText:
        return self.inner.tokenize(texts)

    def forward(self, inputs: torch.Tensor | TokenizedText) -> EncoderOutput:
        if torch.is_grad_enabled() and any(p.requires_grad for p in self.inner.parameters()):
            return self.inner(inputs)
        from safetensors.torch import load, save

        device = (inputs.input_ids if isinstance(inputs, TokenizedText) else inputs).device
        autocast = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None
        salt = f"{self.key}|{autocast}|{device.type}".encode()
        keys = [ENTRY_PREFIX + hashlib.sha256(salt + row).hexdigest() for row in _rows(inputs)]
        found: list[dict[str, torch.Tensor] | None] = []
        for key in keys:
            blob = self.store.get(key)
            found.append(None if blob is None else load(blob))
        missing = [i for i, entry in enumerate(found) if entry is None]
        if missing:
            out = self.inner(_select(inputs, missing))
            with self.store.transact():
                for j, i in enumerate(missing):
                    entry = {"tokens": out.tokens[j], "pooled": out.pooled[j]}
                    if out.mask is not None:
                        entry["mask"] = out.mask[j]
                    computed = {k: v.detach().to("cpu").contiguous() for k, v in entry.items()}
                    found[i] = computed
                    self.store.set(keys[i], save(computed))
        self.hits += len(keys) - len(missing)
        self.computed += len(missing)
        entries = [entry for entry in found if entry is not None]  # every one, now that the missing are computed
        stack = lambda name: torch.stack([entry[name] for entry in entries]).to(device)  # noqa: E731
        return EncoderOutput(tokens=stack("tokens"), pooled=stack("pooled"), mask=stack("mask") if "mask" in entries[0] else None)


def attach(
    model: VLModel,
    frozen: set[str],
    specs: Mapping[str, ComponentSpec],
    choices: Mapping[str, ComponentChoice],
    cache_dir: Path,
) -> dict[str, CachedEncoder]:
    """Put every frozen tower of ``model`` behind the cache; returns them by part."""
    if not enabled():
        return {}
    towers = [
        part for part, module in model.components().items() if part in frozen and isinstance(module, (VisionEncoder, TextEncoder))
    ]
    if not towers:
        return {}
    store = open_store(cache_dir)
    cached = {}
    for part in towers:
        inner = getattr(model, part)
        cached[part] = CachedEncoder(inner, encoder_identity(part, specs[part], choices[part], inner), store)
        setattr(model, part, cached[part])
    return cached


def detach(model: nn.Module, cached: Mapping[str, CachedEncoder]) -> None:
    """Put the towers back (cost is measured on the real forward, never on cache reads)."""
    for part, wrapper in cached.items():
        setattr(model, part, wrapper.inner)


def report(cached: Mapping[str, CachedEncoder]) -> dict[str, Any]:
    """For the record: per cached part, rows served from the cache and rows computed."""
    return {
        part: {"rows_from_cache": w.hits, "rows_computed": w.computed, "encoder_key": w.key[:16]} for part, w in cached.items()
    }


def preflight(runs: Any, cache_dir: Path) -> None:
    """Before any run: a suite with a frozen tower needs a writable cache folder (UserError otherwise)."""
    if enabled() and any(c is not None and c.options.get("freeze") for run in runs for c in run.components.values()):
        open_store(cache_dir).close()


# ---------------------------------------------------------------- vlbench cache info|clear


def report_store(cache_dir: Path, action: str, console: Any) -> int:
    """``vlbench cache info | clear``: what the store under ``cache_dir`` holds, or empty it."""
    where = folder(cache_dir)
    if not (where / "cache.db").is_file():
        console.print(f"no embedding cache at {where}", markup=False, soft_wrap=True)
        return 0
    store = open_store(cache_dir)
    with store:
        if action == "clear":
            removed = store.clear()
            console.print(f"removed {removed} entries from {where}", markup=False, soft_wrap=True)
            return 0
        rows = sum(1 for key in store.iterkeys() if isinstance(key, str) and key.startswith(ENTRY_PREFIX))
        console.print(
            f"embedding cache {where}: {rows} rows, {store.volume() / 1024**2:.1f} MiB of "
            f"{store.size_limit / 1024**3:.1f} GiB (least recently used evicted beyond)",
            markup=False,
            soft_wrap=True,
        )
        for key in store.iterkeys():
            if isinstance(key, str) and key.startswith(COMPONENT_PREFIX):
                blob = store.get(key)
                if blob is None:
                    continue
                who = json.loads(blob)
                console.print(
                    f"  {key[len(COMPONENT_PREFIX) :][:16]}  {who['kind']} {who['name']} ({who['distribution']} {who['version']}) "
                    f"weights sha256:{who['weights_sha256'][:16]}",
                    markup=False,
                    soft_wrap=True,
                )
    return 0
