"""Synthetic pedestrians: the embedded default dataset for text-based person search.

Each identity is a set of attributes (garments and their colours, shoes, bag, hat, hair,
gender), rendered in several views with pose, scale, position, background and lighting
jitter, and described by two captions per image written from varied templates and
synonyms. A fraction of the identities are near-copies of another identity in the same split
that differ in exactly one attribute, so a model has to read every attribute to rank well.

This module holds the options, the cache and the generation; the vocabulary and identities
(``_pedestrian_attributes``), the rendering (``_pedestrian_render``) and the captions
(``_pedestrian_captions``) live beside it. The result is cached under ``cache_dir/synthetic_pedestrians-<key>/`` as one ``.npy`` per split (read
through a memmap) plus ``meta.json``; the cache directory appears atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.plugins.datasets._pedestrian_attributes import SKIN_TONES, VOCAB, sample_identities
from vlbench.plugins.datasets._pedestrian_captions import CAPTIONS_PER_IMAGE, captions
from vlbench.plugins.datasets._pedestrian_render import render
from vlbench.types import Dataset, DatasetSpec, Register, Split

NAME = "synthetic_pedestrians"
# Part of the cache key: bump it whenever images or captions change for the same options.
GENERATOR_VERSION = 1
DEFAULTS: dict[str, Any] = {
    "identities": [240, 60, 60],  # train, val, test; disjoint identity sets
    "views_per_identity": 4,
    "image_size": [128, 64],  # H, W
    "hard_negative_fraction": 0.3,  # share of a split's identities made as one-attribute near-copies
}
SPLITS = ("train", "val", "test")
_CHUNK = 256  # images rendered per vectorised batch; a constant so output never depends on it

# ---------------------------------------------------------------- options and cache


def _check_int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise UserError(
            f"dataset {NAME!r}: option {key!r} must be an integer from {lo} to {hi}, got "
            f"{value!r}. Fix it in the dataset options of the suite."
        )
    return value


def _check_int_list(key: str, value: Any, n: int, lo: int, hi: int) -> list[int]:
    if not isinstance(value, (list, tuple)) or len(value) != n:
        raise UserError(
            f"dataset {NAME!r}: option {key!r} must be a list of {n} integers, got {value!r}. The default is {DEFAULTS[key]!r}."
        )
    return [_check_int(f"{key}[{i}]", v, lo, hi) for i, v in enumerate(value)]


def resolve_options(options: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and every value checked; UserError names the bad option."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise UserError(
            f"dataset {NAME!r}: unknown option(s) {unknown}; it accepts {sorted(DEFAULTS)}. "
            f"Remove or rename them in the dataset options of the suite."
        )
    merged = {**DEFAULTS, **options}
    fraction = merged["hard_negative_fraction"]
    # Near-copies need a distinct source each, so at most half a split can be copies.
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 0.5:
        raise UserError(f"dataset {NAME!r}: option 'hard_negative_fraction' must be a number from 0 to 0.5, got {fraction!r}.")
    return {
        "identities": _check_int_list("identities", merged["identities"], 3, 1, 1_000_000),
        "views_per_identity": _check_int("views_per_identity", merged["views_per_identity"], 1, 1000),
        "image_size": _check_int_list("image_size", merged["image_size"], 2, 32, 1024),
        "hard_negative_fraction": float(fraction),
    }


def cache_key(seed: int, options: dict[str, Any]) -> str:
    canonical = json.dumps({"name": NAME, "version": GENERATOR_VERSION, "seed": seed, "options": options}, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


class _MemmapImages:
    """``Split.load_image`` over a split's ``.npy``: mapped lazily, so pickling it for
    DataLoader workers sends only the path, never the array."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._images: np.ndarray | None = None

    def __call__(self, index: int) -> np.ndarray:
        if self._images is None:
            self._images = np.load(self.path, mmap_mode="r")
        return np.array(self._images[index])  # a private, writable copy

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "_images": None}


def factory(cache_dir: Path, seed: int, **options: Any) -> Dataset:
    """Generate (or reuse from ``cache_dir``) the dataset for ``seed`` and ``options``."""
    opts = resolve_options(options)
    key = cache_key(seed, opts)
    final = Path(cache_dir) / f"{NAME}-{key}"
    reused = final.is_dir()
    if reused:
        # A published cache is complete by construction; a gap means someone deleted files.
        missing = [f for f in ("meta.json", *(f"{s}.npy" for s in SPLITS)) if not (final / f).is_file()]
        if missing:
            raise UserError(
                f"dataset {NAME!r}: the cache {final} lacks {', '.join(missing)}. Delete that "
                f"folder and run again to regenerate it."
            )
    else:
        _generate_atomically(final, seed, opts)
    meta = json.loads((final / "meta.json").read_text())
    splits = {}
    for name in SPLITS:
        s = meta["splits"][name]
        splits[name] = Split(
            name=name,
            ids=tuple(s["ids"]),
            load_image=_MemmapImages(final / f"{name}.npy"),
            captions=tuple(tuple(c) for c in s["captions"]),
            identities=tuple(s["identities"]),
        )
    info = {**meta["info"], "cache": {"path": str(final), "key": key, "reused": reused}}
    return Dataset(name=NAME, splits=splits, info=info)


def _generate_atomically(final: Path, seed: int, opts: dict[str, Any]) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        _generate(tmp, seed, opts)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process published the same cache first; its copy is identical.
            if not final.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- generation


def _generate(out: Path, seed: int, opts: dict[str, Any]) -> None:
    started = time.perf_counter()
    height, width = opts["image_size"]
    views = opts["views_per_identity"]
    identities, hard = sample_identities(np.random.default_rng([seed, 0]), opts["identities"], opts["hard_negative_fraction"])
    body_rng = np.random.default_rng([seed, 1])
    bodies = np.stack(
        [
            body_rng.integers(0, len(SKIN_TONES), len(identities)).astype(np.float32),
            body_rng.uniform(0.94, 1.0, len(identities)).astype(np.float32),
            body_rng.uniform(0.92, 1.08, len(identities)).astype(np.float32),
        ],
        axis=1,
    )
    for copy, source, _ in hard:  # near-copies share the build: only the attribute differs
        bodies[copy] = bodies[source]

    digest = hashlib.sha256()
    splits: dict[str, dict[str, Any]] = {}
    stats: dict[str, dict[str, int]] = {}
    first = 0
    for si, (name, n) in enumerate(zip(SPLITS, opts["identities"], strict=True)):
        pids = [pid for pid in range(first, first + n) for _ in range(views)]
        rng = np.random.default_rng([seed, 2, si])
        noise_bank = rng.standard_normal((8, height, width * 3), dtype=np.float32)
        noise_bank *= np.linspace(2, 7, len(noise_bank), dtype=np.float32)[:, None, None]
        # Written straight to disk chunk by chunk: a split never has to fit in memory.
        images = np.lib.format.open_memmap(out / f"{name}.npy", mode="w+", dtype=np.uint8, shape=(len(pids), height, width, 3))
        for start in range(0, len(pids), _CHUNK):
            chunk = pids[start : start + _CHUNK]
            rendered = render(rng, [identities[p] for p in chunk], bodies[chunk], noise_bank, height, width)
            images[start : start + len(chunk)] = rendered
            digest.update(rendered.tobytes())
        images.flush()
        del images
        # Python's generator: per-word choices cost a tenth of numpy's; seeding by string is stable.
        caption_rng = random.Random(f"{NAME}/{seed}/{name}/captions")
        splits[name] = {
            "ids": [f"{name}/{p:05d}_{v}" for p in range(first, first + n) for v in range(views)],
            "identities": pids,
            "captions": [captions(caption_rng, identities[p]) for p in pids],
        }
        stats[name] = {
            "n_identities": n,
            "n_images": len(pids),
            "n_captions": CAPTIONS_PER_IMAGE * len(pids),
            "n_hard_negative_identities": sum(1 for copy, _, _ in hard if first <= copy < first + n),
        }
        first += n
    digest.update(json.dumps([splits[s] for s in SPLITS], sort_keys=True).encode())
    elapsed = time.perf_counter() - started
    n_images = sum(s["n_images"] for s in stats.values())
    meta = {
        "splits": splits,
        "identity_attributes": identities,  # index = identity id
        "info": {
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "options": opts,
            "synthetic": True,
            "n_identities": len(identities),
            "splits": stats,
            "attribute_vocabulary": {k: list(v) for k, v in VOCAB.items()},
            "hard_negatives": [list(t) for t in hard],  # [copy identity, source identity, attribute]
            "checksum": {"sha256": digest.hexdigest(), "covers": "image bytes, ids, identities, captions"},
            "generation": {"seconds": round(elapsed, 3), "images_per_second": round(n_images / elapsed, 1)},
        },
    }
    (out / "meta.json").write_text(json.dumps(meta))
    for path in out.iterdir():  # on disk before the rename publishes the cache
        with open(path, "rb") as f:
            os.fsync(f.fileno())


@hookimpl
def vlbench_register_datasets(register: Register) -> None:
    register(
        DatasetSpec(
            name=NAME,
            factory=factory,
            description=(
                "Rendered pedestrians with attribute captions (2 per image) and identities; "
                "identity-disjoint splits with one-attribute hard negatives. Generated, cached."
            ),
            options={k: list(v) if isinstance(v, list) else v for k, v in DEFAULTS.items()},
            content_version=f"generator v{GENERATOR_VERSION}",
            provides=frozenset({"image", "captions", "identity"}),
            synthetic=True,
        )
    )
