"""Synthetic scenes: the embedded default dataset of the multi-label task.

Each image shows one object per label on a textured background with distractor blobs.
An object class is a glyph (one of six shapes in one of three colours) with a name used in
captions ("a dog", "a kite"). The label distribution is long-tailed like study 000's
competition data: one class in about 70% of the images, the rarest in under 1%, about 1.5
labels per image, at least one per image.

Some objects are drawn poorly (``poor_visibility`` of them): small, faint (blended into the
background) or mostly covered by an occluder. The caption names each poorly drawn object
with probability ``mention_poor`` and each clearly drawn one with ``mention_visible``, as a
person describing a photo names what they know is there; with ``false_mention`` it also
names one absent object, as real captions sometimes do. So the caption carries labels the
pixels hide, and early fusion has a real reason to beat the image-only ablation; neither
modality alone is complete.

Rendering is vectorised numpy over chunks of images (the chunk size is a constant, so the
output never depends on it). The result is cached under ``cache_dir/synthetic_scenes-<key>/``
as one ``.npy`` per split (read through a memmap) plus ``meta.json``; the directory appears
atomically. The classes and the drawing are ``_scene_render``, the captions ``_scene_captions``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.plugins.datasets._scene_captions import write_captions
from vlbench.plugins.datasets._scene_render import (
    CLASS_NAMES,
    COLORS,
    OCCLUDED,
    PREVALENCE,
    SHAPES,
    SMALL,
    VISIBLE,
    render,
    sample_labels,
)
from vlbench.types import Dataset, DatasetSpec, Register, Split

NAME = "synthetic_scenes"
# Part of the cache key: bump it whenever images or captions change for the same options.
GENERATOR_VERSION = 1
DEFAULTS: dict[str, Any] = {
    "n_images": [4000, 1000, 1000],  # train, val, test; independent draws
    "image_size": [96, 96],  # H, W as generated; the run's loader resizes to the encoder's size
    "poor_visibility": 0.4,  # share of objects drawn small, faint or occluded
    "mention_visible": 0.5,  # chance a caption names a clearly drawn object
    "mention_poor": 0.9,  # chance a caption names a poorly drawn object
    "false_mention": 0.05,  # chance a caption also names one absent object
}
SPLITS = ("train", "val", "test")
_CHUNK = 256  # images rendered per vectorised batch

# ---------------------------------------------------------------- options and cache


def _fail(key: str, message: str) -> UserError:
    return UserError(f"dataset {NAME!r}: option {key!r} {message} Fix it in the dataset options of the suite.")


def _int_list(key: str, value: Any, n: int, lo: int, hi: int) -> list[int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != n
        or not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in value)
    ):
        raise _fail(key, f"must be a list of {n} integers from {lo} to {hi}, got {value!r} (default {DEFAULTS[key]!r}).")
    return list(value)


def _probability(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise _fail(key, f"must be a probability from 0 to 1, got {value!r}.")
    return float(value)


def resolve_options(options: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and every value checked; UserError names the bad option."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise UserError(f"dataset {NAME!r}: unknown option(s) {unknown}; it accepts {sorted(DEFAULTS)}.")
    merged = {**DEFAULTS, **options}
    return {
        "n_images": _int_list("n_images", merged["n_images"], 3, 1, 10_000_000),
        "image_size": _int_list("image_size", merged["image_size"], 2, 32, 1024),
        **{k: _probability(k, merged[k]) for k in ("poor_visibility", "mention_visible", "mention_poor", "false_mention")},
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
    reused = (final / "meta.json").is_file()
    if not reused:
        _generate_atomically(final, seed, opts)
    meta = json.loads((final / "meta.json").read_text())
    splits = {
        name: Split(
            name=name,
            ids=tuple(meta["splits"][name]["ids"]),
            load_image=_MemmapImages(final / f"{name}.npy"),
            captions=tuple((c,) for c in meta["splits"][name]["captions"]),
            labels=tuple(tuple(labels) for labels in meta["splits"][name]["labels"]),
        )
        for name in SPLITS
    }
    info = {**meta["info"], "cache": {"path": str(final), "key": key, "reused": reused}}
    return Dataset(name=NAME, splits=splits, class_names=CLASS_NAMES, info=info)


def _generate_atomically(final: Path, seed: int, opts: dict[str, Any]) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        _generate(tmp, seed, opts)
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same cache first; its copy is identical.
            if not (final / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- generation


def _split_stats(labels: np.ndarray, modes: np.ndarray, named: np.ndarray) -> dict[str, Any]:
    poor = labels & (modes != VISIBLE)
    return {
        "n_images": int(len(labels)),
        "prevalence": {n: round(float(p), 5) for n, p in zip(CLASS_NAMES, labels.mean(axis=0), strict=True)},
        "labels_per_image": round(float(labels.sum(axis=1).mean()), 4),
        "poorly_drawn_share_of_labels": round(float(poor.sum() / labels.sum()), 4),
        "caption_names_share_of_labels": round(float((named & labels).sum() / labels.sum()), 4),
        "caption_names_share_of_poorly_drawn": round(float((named & poor).sum() / max(1, poor.sum())), 4),
        "caption_false_mentions": int((named & ~labels).sum()),
    }


def _generate(out: Path, seed: int, opts: dict[str, Any]) -> None:
    started = time.perf_counter()
    height, width = opts["image_size"]
    digest = hashlib.sha256()
    splits: dict[str, dict[str, Any]] = {}
    stats: dict[str, dict[str, Any]] = {}
    for si, (name, n) in enumerate(zip(SPLITS, opts["n_images"], strict=True)):
        rng = np.random.default_rng([seed, si])
        labels = sample_labels(rng, n)
        poor = rng.random(labels.shape) < opts["poor_visibility"]
        modes = np.where(poor, rng.integers(SMALL, OCCLUDED + 1, labels.shape), VISIBLE)
        images = np.lib.format.open_memmap(out / f"{name}.npy", mode="w+", dtype=np.uint8, shape=(n, height, width, 3))
        render_rng = np.random.default_rng([seed, si, 1])
        for start in range(0, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            images[start:stop] = render(render_rng, labels[start:stop], modes[start:stop], height, width)
        images.flush()
        digest.update(np.ascontiguousarray(images).data.cast("B"))
        del images
        captions, named = write_captions(np.random.default_rng([seed, si, 2]), labels, modes, opts)
        splits[name] = {
            "ids": [f"{name}/{i:06d}" for i in range(n)],
            "labels": [np.flatnonzero(row).tolist() for row in labels],
            "captions": captions,
        }
        stats[name] = _split_stats(labels, modes, named)
    digest.update(json.dumps([splits[s] for s in SPLITS], sort_keys=True).encode())
    elapsed = time.perf_counter() - started
    meta = {
        "splits": splits,
        "info": {
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "options": opts,
            "synthetic": True,
            "classes": {n: f"{SHAPES[c % len(SHAPES)]}, {list(COLORS)[c // len(SHAPES)]}" for c, n in enumerate(CLASS_NAMES)},
            "target_prevalence": dict(zip(CLASS_NAMES, PREVALENCE, strict=True)),
            "splits": stats,
            "checksum": {"sha256": digest.hexdigest(), "covers": "image bytes, ids, labels, captions"},
            "generation": {"seconds": round(elapsed, 3), "images_per_second": round(sum(opts["n_images"]) / elapsed, 1)},
        },
    }
    (out / "meta.json").write_text(json.dumps(meta))


@hookimpl
def vlbench_register_datasets(register: Register) -> None:
    register(
        DatasetSpec(
            name=NAME,
            factory=factory,
            description=(
                "Rendered multi-object scenes, 18 long-tailed classes, one caption per image that names "
                "objects the image shows poorly (small, faint, occluded). Generated, cached."
            ),
            options={k: list(v) if isinstance(v, list) else v for k, v in DEFAULTS.items()},
            content_version=f"generator v{GENERATOR_VERSION}",
            provides=frozenset({"image", "captions", "labels"}),
            synthetic=True,
        )
    )
