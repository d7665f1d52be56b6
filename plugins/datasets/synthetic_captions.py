"""Synthetic captioned shapes: the embedded default dataset of the captioning task.

Each image shows a group of 1 to ``max_count`` identical glyphs (same shape, colour and
size), each in its own cell of a 3 x 3 grid so they never overlap and can be counted, on
a muted background cluttered with gradients, waves and grey blobs. What is drawn fixes
the caption's content: count, size and shape ("two small circles"), plus the colour with
``mention_colour = true`` ("two small red circles"). Every image has
``captions_per_image`` references, each from a different sentence template with random
synonyms ("there are two little circles", "a picture of two small circles", ...), so the
references agree on content and differ in wording, as COCO's do. About 30 words.

Why colour and clutter are unmentioned by default: a random-init network's pooled
features mostly follow colour and background statistics, so the nearest-train-caption
baseline with untrained features would name the colour right for free (measured: val
CIDEr-D 169 with colour in the captions and a plain background, 79 as generated now,
against 61 for the most frequent train caption). Count, size and shape are what a
captioner has to learn to see; there are 4 x 2 x 4 = 32 contents at the default
``max_count`` (128 with colour).

Rendering is numpy: backgrounds, clutter and noise for a chunk of images at once, then
each glyph inside its bounding box. The result is cached under
``cache_dir/synthetic_captions-<key>/`` as one ``.npy`` per split (read through a memmap)
plus ``meta.json``; the directory appears atomically.
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
from vlbench.types import Dataset, DatasetSpec, Register, Split

NAME = "synthetic_captions"
# Part of the cache key: bump it whenever images or captions change for the same options.
GENERATOR_VERSION = 3
DEFAULTS: dict[str, Any] = {
    "n_images": [4000, 500, 500],  # train, val, test; independent draws
    "image_size": [64, 64],  # H, W as generated; the run's loader resizes to the encoder's size
    "captions_per_image": 5,  # references per image, each from a different template
    "max_count": 4,  # glyphs per image: 1 to max_count
    "distractors": 3,  # muted background ellipses per image (clutter no caption mentions)
    "mention_colour": False,  # captions name the glyph colour too (then colour is content, not clutter)
}
SPLITS = ("train", "val", "test")
_CHUNK = 256  # images whose backgrounds are drawn at once; a constant so output never depends on it

COLORS = {"red": (212, 48, 42), "green": (46, 168, 72), "blue": (50, 84, 222), "yellow": (228, 204, 46)}
SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = ("small", "large")
_SIZE_WORDS = {"small": ("small", "little"), "large": ("large", "big")}
_COUNT_WORDS = ("one", "two", "three", "four")
_RADIUS = {"small": (0.06, 0.075), "large": (0.11, 0.14)}  # glyph radius as a share of the image side
# Sentence templates over {n} (count word), {size}, {colour}, {shape} (singular/plural as
# the count needs), {be} ("is"/"are"). No two references of an image share a template.
TEMPLATES = (
    "{n} {size} {colour} {shape}",
    "there {be} {n} {size} {colour} {shape}",
    "a picture of {n} {size} {colour} {shape}",
    "{n} {colour} {shape} that {be} {size}",
    "an image showing {n} {size} {colour} {shape}",
    "{n} {size} {colour} {shape} on a busy background",
)
MAX_COUNT = len(_COUNT_WORDS)


# ---------------------------------------------------------------- options and cache


def _fail(key: str, message: str) -> UserError:
    return UserError(f"dataset {NAME!r}: option {key!r} {message} Fix it in the dataset options of the suite.")


def _int(key: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _fail(key, f"must be an integer from {lo} to {hi}, got {value!r} (default {DEFAULTS[key]!r}).")
    return value


def _int_list(key: str, value: Any, n: int, lo: int, hi: int) -> list[int]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != n
        or not all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in value)
    ):
        raise _fail(key, f"must be a list of {n} integers from {lo} to {hi}, got {value!r} (default {DEFAULTS[key]!r}).")
    return list(value)


def _bool(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _fail(key, f"must be true or false, got {value!r} (default {str(DEFAULTS[key]).lower()}).")
    return value


def resolve_options(options: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in and every value checked; UserError names the bad option."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise UserError(f"dataset {NAME!r}: unknown option(s) {unknown}; it accepts {sorted(DEFAULTS)}.")
    merged = {**DEFAULTS, **options}
    return {
        "n_images": _int_list("n_images", merged["n_images"], 3, 2, 10_000_000),
        "image_size": _int_list("image_size", merged["image_size"], 2, 32, 1024),
        "captions_per_image": _int("captions_per_image", merged["captions_per_image"], 1, len(TEMPLATES)),
        "max_count": _int("max_count", merged["max_count"], 1, MAX_COUNT),
        "distractors": _int("distractors", merged["distractors"], 0, 10),
        "mention_colour": _bool("mention_colour", merged["mention_colour"]),
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
            captions=tuple(tuple(c) for c in meta["splits"][name]["captions"]),
        )
        for name in SPLITS
    }
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
            # Another process finished the same cache first; its copy is identical.
            if not (final / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- scenes


def _glyph(dx: np.ndarray, dy: np.ndarray, shape: str) -> np.ndarray:
    """Inside-mask of a glyph at offsets (dx, dy) in units of its radius."""
    if shape == "circle":
        return dx * dx + dy * dy < 1
    if shape == "square":
        return (np.abs(dx) < 0.8) & (np.abs(dy) < 0.8)
    if shape == "triangle":  # apex up
        return (dy < 0.75) & (np.abs(dx) < (dy + 1) * 0.58)
    return np.abs(dx) + np.abs(dy) < 1.05  # diamond


def _render(rng: np.random.Generator, contents: list[dict[str, Any]], height: int, width: int, distractors: int) -> np.ndarray:
    """uint8 [B, H, W, 3]: per image, ``count`` glyphs in distinct cells of a 3 x 3 grid.
    Backgrounds and noise are drawn for the whole chunk at once; glyphs one by one."""
    b = len(contents)
    yy = (np.arange(height, dtype=np.float32) + 0.5)[:, None]
    xx = (np.arange(width, dtype=np.float32) + 0.5)[None, :]
    side = float(min(height, width))
    # Muted backgrounds (low saturation, so every glyph colour stands out) that vary a lot in
    # tone, gradient, waves and blobs: image statistics a random-init network's pooled features
    # follow, unrelated to the caption. A lookup by untrained features then matches
    # backgrounds, not content, while a trained captioner learns to look at the glyphs.
    base = (rng.uniform(60, 190, (b, 1)) + rng.uniform(-20, 20, (b, 3))).astype(np.float32)
    tilt = rng.uniform(-50, 50, (b, 3)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, b).astype(np.float32)[:, None, None]
    ramp = (xx / width - 0.5) * np.cos(angle) + (yy / height - 0.5) * np.sin(angle)  # [B, H, W]
    img = base[:, None, None] + tilt[:, None, None] * ramp[..., None]
    freq = rng.uniform(1, 8, (b, 2)).astype(np.float32)[:, :, None, None]
    phase = rng.uniform(0, 2 * np.pi, (b, 2)).astype(np.float32)[:, :, None, None]
    waves = np.sin(freq[:, 0] * np.pi * xx / width + phase[:, 0]) * np.sin(freq[:, 1] * np.pi * yy / height + phase[:, 1])
    img += (rng.uniform(0, 30, b).astype(np.float32)[:, None, None] * waves)[..., None]
    for _ in range(distractors):  # muted ellipses: no glyph colour, no glyph shape
        cx, cy = (rng.uniform(0, 1, (2, b)) * [[width], [height]]).astype(np.float32)[:, :, None, None]
        rx, ry = (side * rng.uniform(0.06, 0.25, (2, b))).astype(np.float32)[:, :, None, None]
        blob = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
        shade = base + rng.uniform(-60, 60, (b, 1)).astype(np.float32) + rng.uniform(-15, 15, (b, 3)).astype(np.float32)
        img = np.where(blob[..., None], shade[:, None, None], img)
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(2, 8, (b, 1, 1, 1)).astype(np.float32)

    cell_h, cell_w = height / 3, width / 3
    for image, content in zip(img, contents, strict=True):
        colour = np.array(COLORS[content["colour"]], np.float32)
        lo, hi = _RADIUS[content["size"]]
        for cell in rng.permutation(9)[: content["count"]]:
            radius = side * rng.uniform(lo, hi)
            row, col = divmod(int(cell), 3)
            # Jitter inside the cell without leaving it, so glyphs never touch.
            cy = (row + 0.5) * cell_h + rng.uniform(-1, 1) * max(0.0, cell_h / 2 - radius)
            cx = (col + 0.5) * cell_w + rng.uniform(-1, 1) * max(0.0, cell_w / 2 - radius)
            # Only the glyph's bounding box is tested, so cost does not grow with the image.
            y0, y1 = max(0, int(cy - radius) - 1), min(height, int(cy + radius) + 2)
            x0, x1 = max(0, int(cx - radius) - 1), min(width, int(cx + radius) + 2)
            inside = _glyph((xx[:, x0:x1] - cx) / radius, (yy[y0:y1] - cy) / radius, content["shape"])
            patch = image[y0:y1, x0:x1]
            # Flat glyph colour plus faint pixel noise (the background's noise is under it).
            patch[inside] = colour + rng.uniform(-18, 18, 3) + rng.normal(0, 3, (int(inside.sum()), 3))
    return np.clip(img, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- captions


def _plural(shape: str) -> str:
    return shape + "s"


def _captions(rng: np.random.Generator, content: dict[str, Any], k: int, mention_colour: bool) -> list[str]:
    """``k`` references for ``content``, each from a different template."""
    count = content["count"]
    out = []
    for t in rng.permutation(len(TEMPLATES))[:k]:
        sizes = _SIZE_WORDS[content["size"]]
        n = _COUNT_WORDS[count - 1]
        if count == 1 and rng.random() < 0.5:
            n = "a"
        text = TEMPLATES[int(t)].format(
            n=n,
            size=sizes[int(rng.integers(len(sizes)))],
            colour=content["colour"] if mention_colour else "",
            shape=content["shape"] if count == 1 else _plural(content["shape"]),
            be="is" if count == 1 else "are",
        )
        out.append(" ".join(text.split()))  # an unmentioned colour leaves a double space
    return out


def _sample_content(rng: np.random.Generator, max_count: int) -> dict[str, Any]:
    return {
        "count": int(rng.integers(1, max_count + 1)),
        "size": SIZES[int(rng.integers(len(SIZES)))],
        "colour": list(COLORS)[int(rng.integers(len(COLORS)))],
        "shape": SHAPES[int(rng.integers(len(SHAPES)))],
    }


# ---------------------------------------------------------------- generation


def vocabulary(mention_colour: bool = True) -> list[str]:
    """Every word a caption of this dataset can use (for docs and tests)."""
    words = set(" ".join(TEMPLATES).replace("{", " ").replace("}", " ").split()) - {"n", "size", "colour", "shape", "be"}
    words |= {"a", "is", "are", *_COUNT_WORDS, *SHAPES, *map(_plural, SHAPES)} | (set(COLORS) if mention_colour else set())
    words |= {w for pair in _SIZE_WORDS.values() for w in pair}
    return sorted(words)


def _generate(out: Path, seed: int, opts: dict[str, Any]) -> None:
    started = time.perf_counter()
    height, width = opts["image_size"]
    digest = hashlib.sha256()
    splits: dict[str, dict[str, Any]] = {}
    for si, (name, n) in enumerate(zip(SPLITS, opts["n_images"], strict=True)):
        content_rng = np.random.default_rng([seed, si])
        render_rng = np.random.default_rng([seed, si, 1])
        caption_rng = np.random.default_rng([seed, si, 2])
        contents = [_sample_content(content_rng, opts["max_count"]) for _ in range(n)]
        images = np.lib.format.open_memmap(out / f"{name}.npy", mode="w+", dtype=np.uint8, shape=(n, height, width, 3))
        for start in range(0, n, _CHUNK):
            images[start : start + _CHUNK] = _render(
                render_rng, contents[start : start + _CHUNK], height, width, opts["distractors"]
            )
        images.flush()
        digest.update(np.ascontiguousarray(images).data.cast("B"))
        del images
        splits[name] = {
            "ids": [f"{name}/{i:06d}" for i in range(n)],
            "captions": [_captions(caption_rng, c, opts["captions_per_image"], opts["mention_colour"]) for c in contents],
            "contents": contents,
        }
    digest.update(json.dumps([splits[s] for s in SPLITS], sort_keys=True).encode())
    elapsed = time.perf_counter() - started
    meta = {
        "splits": splits,
        "info": {
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "options": opts,
            "synthetic": True,
            "attributes": {
                "count": list(range(1, opts["max_count"] + 1)),
                "size": list(SIZES),
                "colour": list(COLORS),
                "shape": list(SHAPES),
            },
            "templates": list(TEMPLATES),
            "vocabulary": vocabulary(opts["mention_colour"]),
            "checksum": {"sha256": digest.hexdigest(), "covers": "image bytes, ids, captions, contents"},
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
                "Rendered groups of 1-4 identical shapes on cluttered backgrounds; several paraphrased captions "
                "per image naming count, size and shape (colour optional; about 30 words). Generated, cached."
            ),
            options={k: list(v) if isinstance(v, list) else v for k, v in DEFAULTS.items()},
            provides=frozenset({"image", "captions"}),
            synthetic=True,
        )
    )
