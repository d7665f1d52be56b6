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
atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlbench import hookimpl
from vlbench.errors import UserError
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

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond")
COLORS = {"red": (214, 48, 42), "green": (46, 164, 70), "blue": (48, 82, 218)}
# Class c is shape c % 6 in colour c // 6; names are nouns a caption can use.
CLASS_NAMES = (
    "person",
    "car",
    "dog",
    "bicycle",
    "bird",
    "tree",
    "bus",
    "cat",
    "boat",
    "chair",
    "kite",
    "horse",
    "umbrella",
    "clock",
    "train",
    "sheep",
    "bench",
    "airplane",
)
# Target share of images showing each class: long-tailed like study 000 (label 1 in ~70%,
# most others under 10%, the rarest under 1%); about 1.5 labels per image.
PREVALENCE = (0.70, 0.15, 0.12, 0.10, 0.08, 0.07, 0.06, 0.05, 0.04, 0.035, 0.03, 0.025, 0.02, 0.018, 0.015, 0.012, 0.01, 0.007)
VISIBLE, SMALL, FAINT, OCCLUDED = range(4)
_POOR_WORDS = {
    SMALL: ("small", "tiny", "distant"),
    FAINT: ("faint", "blurry", "pale"),
    OCCLUDED: ("partly hidden", "half-covered"),
}
_PLACES = ("street", "park", "field", "room", "beach", "garden", "yard", "market")


def _first_label_probability() -> float:
    """Bernoulli rate of class 0 such that, after giving class 0 to every image that drew no
    label at all, class 0 ends up in PREVALENCE[0] of the images."""
    none_other = float(np.prod([1 - p for p in PREVALENCE[1:]]))
    return (PREVALENCE[0] - none_other) / (1 - none_other)


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


# ---------------------------------------------------------------- scenes


def _sample_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, C] bool: independent draws with the long-tailed rates, class 0 where none was drawn."""
    rates = np.array([_first_label_probability(), *PREVALENCE[1:]])
    labels = rng.random((n, len(rates))) < rates
    labels[~labels.any(axis=1), 0] = True
    return labels


def _shape_mask(dx: np.ndarray, dy: np.ndarray, shape: int) -> np.ndarray:
    """Inside-mask of glyph ``shape`` at offsets (dx, dy) in units of its radius."""
    ax, ay = np.abs(dx), np.abs(dy)
    if shape == 0:  # circle
        return dx * dx + dy * dy < 1
    if shape == 1:  # square
        return (ax < 0.85) & (ay < 0.85)
    if shape == 2:  # triangle, apex up
        return (dy < 0.8) & (ax < (dy + 1) * 0.55)
    if shape == 3:  # cross
        return ((ax < 0.3) & (ay < 1)) | ((ay < 0.3) & (ax < 1))
    if shape == 4:  # ring
        r2 = dx * dx + dy * dy
        return (r2 < 1) & (r2 > 0.36)
    return ax + ay < 1.05  # diamond


def _render(rng: np.random.Generator, labels: np.ndarray, modes: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 [B, H, W, 3] for label matrix [B, C] and per-label drawing modes [B, C]."""
    b = len(labels)
    yy = (np.arange(height, dtype=np.float32) + 0.5)[None, :, None]
    xx = (np.arange(width, dtype=np.float32) + 0.5)[None, None, :]
    side = np.float32(min(height, width))

    # Background: a muted two-tone gradient in a random direction, low-frequency waves, blobs.
    # Muted, so a clearly drawn object stands out by its saturated colour and a faint one does not.
    c0 = (rng.uniform(70, 190, (b, 1)) + rng.uniform(-20, 20, (b, 3))).astype(np.float32)
    c1 = c0 + rng.uniform(-35, 35, (b, 1)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, b).astype(np.float32)[:, None, None]
    t = np.clip(0.5 + ((xx / width - 0.5) * np.cos(angle) + (yy / height - 0.5) * np.sin(angle)), 0, 1)
    img = c0[:, None, None] + (c1 - c0)[:, None, None] * t[..., None]
    freq = rng.uniform(2, 6, (b, 2)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, (b, 2)).astype(np.float32)
    waves = np.sin(freq[:, 0, None, None] * np.pi * xx / width + phase[:, 0, None, None]) * np.sin(
        freq[:, 1, None, None] * np.pi * yy / height + phase[:, 1, None, None]
    )
    img += (rng.uniform(0, 18, b).astype(np.float32)[:, None, None] * waves)[..., None]
    for _ in range(3):  # distractor blobs: ellipses in muted colours, no class shape
        cx, cy = (rng.uniform(0, 1, (2, b)) * [[width], [height]]).astype(np.float32)[:, :, None, None]
        rx, ry = (side * rng.uniform(0.05, 0.18, (2, b))).astype(np.float32)[:, :, None, None]
        blob = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        colour = c0 + (rng.uniform(-50, 50, (b, 1)) + rng.uniform(-15, 15, (b, 3))).astype(np.float32)
        img = np.where(blob[..., None], colour[:, None, None], img)
    background = img.mean(axis=(1, 2))  # [B, 3]: what a faint object blends into

    # Objects in a random order per image, each at a random place; slot k holds every
    # image's k-th object, and each glyph is drawn only on the images that have it.
    palette = np.array(list(COLORS.values()), np.float32)
    order = np.argsort(np.where(labels, rng.random(labels.shape), np.inf), axis=1)
    count = labels.sum(axis=1)
    occluders = []
    for slot in range(int(count.max())):
        cls = order[:, slot]
        on = slot < count
        mode = modes[np.arange(b), cls]
        radius = side * np.where(mode == SMALL, rng.uniform(0.045, 0.07, b), rng.uniform(0.1, 0.17, b)).astype(np.float32)
        cx = rng.uniform(radius, width - radius).astype(np.float32)
        cy = rng.uniform(radius, height - radius).astype(np.float32)
        colour = palette[cls // len(SHAPES)] + rng.uniform(-20, 20, (b, 3)).astype(np.float32)
        alpha = np.where(mode == FAINT, rng.uniform(0.15, 0.3, b), 1.0).astype(np.float32)[:, None]
        colour = background * (1 - alpha) + colour * alpha
        for shape in range(len(SHAPES)):
            sub = np.flatnonzero(on & (cls % len(SHAPES) == shape))
            if len(sub):
                dx = (xx - cx[sub, None, None]) / radius[sub, None, None]
                dy = (yy - cy[sub, None, None]) / radius[sub, None, None]
                img[sub] = np.where(_shape_mask(dx, dy, shape)[..., None], colour[sub, None, None], img[sub])
        occluders.append((np.flatnonzero(on & (mode == OCCLUDED)), cx, cy, radius))
    # Occluders go on last so nothing is painted over them: a muted square over ~75% of the object.
    for sub, cx, cy, radius in occluders:
        if not len(sub):
            continue
        cx, cy, radius = cx[sub, None, None], cy[sub, None, None], radius[sub, None, None]
        shift = rng.choice([-1.0, 1.0], (2, len(sub), 1, 1)).astype(np.float32) * radius * 0.5
        box = (np.abs(xx - cx - shift[0]) < radius * 1.1) & (np.abs(yy - cy - shift[1]) < radius * 1.1)
        colour = background[sub] + rng.uniform(-40, 40, (len(sub), 3)).astype(np.float32)
        img[sub] = np.where(box[..., None], colour[:, None, None], img[sub])

    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(3, 10, b).astype(np.float32)[:, None, None, None]
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- captions


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _caption(rng: np.random.Generator, named: Sequence[tuple[int, int]]) -> str:
    """A caption naming ``named`` = [(class, mode)] (modes give adjectives, sometimes)."""
    place = _PLACES[int(rng.integers(len(_PLACES)))]
    if not named:
        return f"A view of a {place}." if rng.random() < 0.5 else f"An ordinary {place} scene."
    phrases = []
    for cls, mode in named:
        word = CLASS_NAMES[cls]
        if mode in _POOR_WORDS and rng.random() < 0.5:
            options = _POOR_WORDS[mode]
            word = f"{options[int(rng.integers(len(options)))]} {word}"
        phrases.append(_article(word))
    listed = _join([phrases[i] for i in rng.permutation(len(phrases))])
    style = int(rng.integers(4))
    if style == 0:
        text = f"a photo of {listed}."
    elif style == 1:
        text = f"{listed} in a {place}."
    elif style == 2:
        text = f"there is {listed} in this picture."
    else:
        text = f"a {place} with {listed}."
    return text[0].upper() + text[1:]


def _captions(
    rng: np.random.Generator, labels: np.ndarray, modes: np.ndarray, opts: dict[str, Any]
) -> tuple[list[str], np.ndarray]:
    """One caption per image, and [B, C] bool of the classes each caption names."""
    poor = modes != VISIBLE
    named = labels & (rng.random(labels.shape) < np.where(poor, opts["mention_poor"], opts["mention_visible"]))
    false = rng.random(len(labels)) < opts["false_mention"]
    captions = []
    for i in range(len(labels)):
        items = [(int(c), int(modes[i, c])) for c in np.flatnonzero(named[i])]
        absent = np.flatnonzero(~labels[i])
        if false[i] and len(absent):
            extra = int(rng.choice(absent))
            items.append((extra, VISIBLE))
            named[i, extra] = True
        captions.append(_caption(rng, items))
    return captions, named


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
        labels = _sample_labels(rng, n)
        poor = rng.random(labels.shape) < opts["poor_visibility"]
        modes = np.where(poor, rng.integers(SMALL, OCCLUDED + 1, labels.shape), VISIBLE)
        images = np.lib.format.open_memmap(out / f"{name}.npy", mode="w+", dtype=np.uint8, shape=(n, height, width, 3))
        render_rng = np.random.default_rng([seed, si, 1])
        for start in range(0, n, _CHUNK):
            stop = min(n, start + _CHUNK)
            images[start:stop] = _render(render_rng, labels[start:stop], modes[start:stop], height, width)
        images.flush()
        digest.update(np.ascontiguousarray(images).data.cast("B"))
        del images
        captions, named = _captions(np.random.default_rng([seed, si, 2]), labels, modes, opts)
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
