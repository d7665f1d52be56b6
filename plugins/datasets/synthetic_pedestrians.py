"""Synthetic pedestrians: the embedded default dataset for text-based person search.

Each identity is a set of attributes (garments and their colours, shoes, bag, hat, hair,
gender), rendered in several views with pose, scale, position, background and lighting
jitter, and described by two captions per image written from varied templates and
synonyms. A fraction of the identities are near-copies of another identity in the same split
that differ in exactly one attribute, so a model has to read every attribute to rank well.

Everything visible is drawn with numpy on a batch of label maps at once (one interval per
row per shape), then coloured, lit and noised in a few whole-batch operations. The result is
cached under ``cache_dir/synthetic_pedestrians-<key>/`` as one ``.npy`` per split (read
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlbench import hookimpl
from vlbench.errors import UserError
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
CAPTIONS_PER_IMAGE = 2
_CHUNK = 256  # images rendered per vectorised batch; a constant so output never depends on it

# ---------------------------------------------------------------- attribute vocabulary

# Saturated, well separated colours so that every colour word is visibly distinct after
# lighting jitter; no red/maroon or navy/blue pairs.
GARMENT_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (28, 28, 30),
    "white": (238, 238, 234),
    "grey": (128, 128, 128),
    "red": (205, 25, 35),
    "orange": (248, 132, 18),
    "yellow": (242, 218, 36),
    "green": (36, 150, 58),
    "blue": (32, 78, 220),
    "purple": (128, 48, 168),
    "pink": (246, 138, 194),
    "brown": (112, 68, 32),
}
SHOE_COLORS: dict[str, tuple[int, int, int]] = {
    k: GARMENT_COLORS[k] for k in ("black", "white", "brown", "red", "blue", "grey")
}
HAIR_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (22, 20, 20),
    "brown": (98, 58, 24),
    "blonde": (228, 196, 108),
    "grey": (168, 168, 168),
    "ginger": (196, 86, 26),
}
# Skin tones are per identity but never captioned (as in real data); kept away from the
# brown garment colour so shorts and skirts stay readable against bare legs.
SKIN_TONES = np.array([(240, 204, 178), (214, 164, 124), (166, 116, 82)], np.float32)

VOCAB: dict[str, tuple[str, ...]] = {
    "gender": ("man", "woman"),
    "hair_length": ("short", "long"),
    "hair_color": tuple(HAIR_COLORS),
    "hat": ("none", "cap", "beanie", "sun hat"),
    "hat_color": ("none", *GARMENT_COLORS),
    "upper": ("t-shirt", "tank top", "jacket", "hoodie", "coat"),
    "upper_color": tuple(GARMENT_COLORS),
    "lower": ("trousers", "shorts", "skirt"),
    "lower_color": tuple(GARMENT_COLORS),
    "shoes_color": tuple(SHOE_COLORS),
    "bag": ("none", "backpack", "handbag", "shoulder bag"),
    "bag_color": ("none", *GARMENT_COLORS),
}
ATTRIBUTES = tuple(VOCAB)

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
            f"dataset {NAME!r}: option {key!r} must be a list of {n} integers, got {value!r}. "
            f"The default is {DEFAULTS[key]!r}."
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
        raise UserError(
            f"dataset {NAME!r}: option 'hard_negative_fraction' must be a number from 0 to 0.5, "
            f"got {fraction!r}."
        )
    return {
        "identities": _check_int_list("identities", merged["identities"], 3, 1, 1_000_000),
        "views_per_identity": _check_int("views_per_identity", merged["views_per_identity"], 1, 1000),
        "image_size": _check_int_list("image_size", merged["image_size"], 2, 32, 1024),
        "hard_negative_fraction": float(fraction),
    }


def cache_key(seed: int, options: dict[str, Any]) -> str:
    canonical = json.dumps(
        {"name": NAME, "version": GENERATOR_VERSION, "seed": seed, "options": options}, sort_keys=True
    )
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


# ---------------------------------------------------------------- identities


def _sample_identity(rng: np.random.Generator) -> dict[str, str]:
    gender = "woman" if rng.random() < 0.5 else "man"
    woman = gender == "woman"
    garment = tuple(GARMENT_COLORS)
    hat = "none" if rng.random() < 0.65 else str(rng.choice(VOCAB["hat"][1:]))
    bag = "none" if rng.random() < 0.35 else str(rng.choice(VOCAB["bag"][1:]))
    lower_p = [0.45, 0.25, 0.30] if woman else [0.7, 0.3, 0.0]
    return {
        "gender": gender,
        "hair_length": "long" if rng.random() < (0.7 if woman else 0.12) else "short",
        "hair_color": str(rng.choice(VOCAB["hair_color"])),
        "hat": hat,
        "hat_color": "none" if hat == "none" else str(rng.choice(garment)),
        "upper": str(rng.choice(VOCAB["upper"])),
        "upper_color": str(rng.choice(garment)),
        "lower": str(rng.choice(VOCAB["lower"], p=lower_p)),
        "lower_color": str(rng.choice(garment)),
        "shoes_color": str(rng.choice(VOCAB["shoes_color"])),
        "bag": bag,
        "bag_color": "none" if bag == "none" else str(rng.choice(garment)),
    }


def _alternatives(attrs: dict[str, str], key: str) -> list[str]:
    """Values ``key`` may take in a near-copy so that exactly this one attribute changes.

    Adding or removing a hat or bag would also change its colour, and gender is the least
    visible attribute, so those changes are never used for hard negatives."""
    if key == "gender" or (key.startswith("hat") and attrs["hat"] == "none"):
        return []
    if key.startswith("bag") and attrs["bag"] == "none":
        return []
    values = [v for v in VOCAB[key] if v not in (attrs[key], "none")]
    if key == "lower" and attrs["gender"] == "man":
        values = [v for v in values if v != "skirt"]
    return values


def _sample_identities(rng: np.random.Generator, counts: Sequence[int], fraction: float) -> tuple[
    list[dict[str, str]], list[tuple[int, int, str]]
]:
    """All identities, numbered across splits, and the (copy, source, attribute) triples."""
    identities: list[dict[str, str]] = []
    seen: set[tuple[str, ...]] = set()
    hard: list[tuple[int, int, str]] = []

    def add(attrs: dict[str, str]) -> bool:
        signature = tuple(attrs[k] for k in ATTRIBUTES)
        if signature in seen:  # two identical identities would make retrieval ambiguous
            return False
        seen.add(signature)
        identities.append(attrs)
        return True

    for n in counts:
        n_copies = int(n * fraction)  # floor: at most half, so every copy has its own source
        first = len(identities)
        while len(identities) < first + n - n_copies:
            add(_sample_identity(rng))
        sources = first + rng.choice(n - n_copies, size=n_copies, replace=False)
        for source in sources.tolist():
            while True:
                keys = [k for k in ATTRIBUTES if _alternatives(identities[source], k)]
                key = str(rng.choice(keys))
                copy = {**identities[source], key: str(rng.choice(_alternatives(identities[source], key)))}
                if add(copy):
                    hard.append((len(identities) - 1, source, key))
                    break
    return identities, hard


# ---------------------------------------------------------------- rendering

# Label-map parts, painted back to front, then coloured from a per-image palette.
# The background is parts too (wall, stripes, floor, two objects), so that compositing is a
# single palette lookup per pixel.
(BG, BG_STRIPE, BG_FLOOR, CLUTTER_A, CLUTTER_B,
 SKIN, HAIR, UPPER, UPPER_DARK, LOWER, SHOES, BAG, BAG_DARK, HAT, HAT_DARK) = range(15)
N_PARTS = 15


def _col(x: Any) -> np.ndarray:
    """A per-image [B] parameter as a column [B, 1] for row-wise broadcasting (scalars stay)."""
    a = np.asarray(x, np.float32)
    return a[:, None] if a.ndim else a


class _Canvas:
    """A batch of label maps painted in body coordinates: y in head-units down from the top
    of the head (soles at 8), x in head-units from the body's centre line, mirrored per image."""

    def __init__(self, height: int, width: int, top: np.ndarray, unit: np.ndarray, cx: np.ndarray, mirror: np.ndarray) -> None:
        self.label = np.zeros((len(top), height, width), np.uint8)
        self.top, self.unit, self.cx, self.mirror = top, unit, cx, mirror
        self.yc = np.arange(height, dtype=np.float32) + 0.5  # pixel centres
        self.xc = np.arange(width, dtype=np.float32) + 0.5
        self.xi = np.arange(width, dtype=np.uint16)

    def _rows(self, y0: np.ndarray, y1: np.ndarray, on: np.ndarray) -> tuple[int, int] | None:
        # Only rows that some enabled image touches are tested: most parts are short.
        if not on.any():
            return None
        r0 = max(0, int(np.floor(y0[on].min())))
        r1 = min(len(self.yc), int(np.ceil(y1[on].max())))
        return (r0, r1) if r0 < r1 else None

    def _paint(self, part: Any, r0: int, r1: int, inside: np.ndarray, left: np.ndarray, right: np.ndarray) -> None:
        """Set ``part`` on pixels whose centre lies in [left, right) of rows r0..r1 where ``inside``."""
        width = len(self.xc)
        lo = np.clip(np.ceil(left - 0.5), 0, width)
        hi = np.clip(np.ceil(right - 0.5), 0, width)
        start = lo.astype(np.uint16)
        count = np.where(inside, np.maximum(hi - lo, 0), 0).astype(np.uint16)
        # Unsigned wrap-around turns "start <= x < start + count" into one subtraction and
        # one comparison, and the blend below into integer arithmetic (no boolean indexing):
        # both matter, since painting is most of the rendering time.
        mask = (self.xi - start[:, :, None]) < count[:, :, None]
        part = np.asarray(part, np.uint8)
        rows = self.label[:, r0:r1]
        rows += mask * ((part[:, None, None] if part.ndim else part) - rows)

    def fill(self, part: Any, on: Any, y0: Any, y1: Any, l0: Any, r0_: Any, l1: Any, r1_: Any) -> None:
        """A trapezoid in pixel coordinates: rows [y0, y1), x from [l0, r0_) to [l1, r1_)."""
        on = np.broadcast_to(np.asarray(on, bool), self.top.shape)
        y0 = np.broadcast_to(np.asarray(y0, np.float32), self.top.shape)
        y1 = np.broadcast_to(np.asarray(y1, np.float32), self.top.shape)
        rows = self._rows(y0, y1, on)
        if rows is None:
            return
        a, b = rows
        t = (self.yc[None, a:b] - y0[:, None]) / np.maximum(y1 - y0, 1e-3)[:, None]
        inside = (t >= 0) & (t < 1) & on[:, None]
        left = _col(l0) + (_col(l1) - _col(l0)) * t
        right = _col(r0_) + (_col(r1_) - _col(r0_)) * t
        self._paint(part, a, b, inside, left, right)

    def quad(self, part: Any, on: Any, y0: Any, y1: Any, xl0: Any, xr0: Any, xl1: Any = None, xr1: Any = None) -> None:
        """A trapezoid in body coordinates, from [xl0, xr0] at y0 to [xl1, xr1] at y1."""
        xl1 = xl0 if xl1 is None else xl1
        xr1 = xr0 if xr1 is None else xr1
        s = self.mirror * self.unit
        ends = [self.cx + s * np.asarray(x, np.float32) for x in (xl0, xr0, xl1, xr1)]
        self.fill(
            part, on, self.top + self.unit * np.asarray(y0, np.float32), self.top + self.unit * np.asarray(y1, np.float32),
            np.minimum(ends[0], ends[1]), np.maximum(ends[0], ends[1]),
            np.minimum(ends[2], ends[3]), np.maximum(ends[2], ends[3]),
        )

    def ellipse(self, part: Any, on: Any, x: Any, y: Any, rx: Any, ry: Any, y_max: Any = 99.0) -> None:
        """An ellipse in body coordinates, cut off below ``y_max`` (domes for hair and hats)."""
        on = np.broadcast_to(np.asarray(on, bool), self.top.shape)
        cy = self.top + self.unit * np.asarray(y, np.float32)
        ry_px = self.unit * np.asarray(ry, np.float32)
        bottom = np.minimum(cy + ry_px, self.top + self.unit * np.asarray(y_max, np.float32))
        rows = self._rows(cy - ry_px, bottom, on)
        if rows is None:
            return
        a, b = rows
        yc = self.yc[None, a:b]
        dy = (yc - cy[:, None]) / ry_px[:, None]
        inside = (np.abs(dy) < 1) & (yc < bottom[:, None]) & on[:, None]
        half = _col(self.unit * np.asarray(rx, np.float32)) * np.sqrt(np.clip(1 - dy * dy, 0, None))
        centre = _col(self.cx + self.mirror * self.unit * np.asarray(x, np.float32))
        self._paint(part, a, b, inside, centre - half, centre + half)


def _codes(attrs: Sequence[dict[str, str]], key: str) -> np.ndarray:
    index = {v: i for i, v in enumerate(VOCAB[key])}
    return np.array([index[a[key]] for a in attrs], np.int64)


def _palette(table: dict[str, tuple[int, int, int]]) -> np.ndarray:
    return np.array(list(table.values()), np.float32)


def _render(
    rng: np.random.Generator,
    attrs: Sequence[dict[str, str]],
    body: np.ndarray,
    noise_bank: np.ndarray,
    height: int,
    width: int,
) -> np.ndarray:
    """Render one view of each identity in ``attrs`` ([B]) -> uint8 [B, H, W, 3].

    ``body`` holds the per-identity, never-captioned build: [B, 3] = skin tone index,
    height factor, width factor."""
    b = len(attrs)
    c = {k: _codes(attrs, k) for k in ATTRIBUTES}
    woman = c["gender"] == 1
    long_hair = c["hair_length"] == 1
    hat, upper, lower, bag = c["hat"], c["upper"], c["lower"], c["bag"]
    tshirt, tank, jacket, hoodie, coat = (upper == i for i in range(5))
    trousers, shorts, skirt = (lower == i for i in range(3))
    backpack, handbag, shoulder_bag = (bag == i for i in (1, 2, 3))
    cap, beanie, sun_hat = (hat == i for i in (1, 2, 3))

    # --- view: scale, placement, facing, pose
    u = np.float32(height) * rng.uniform(0.80, 0.92, b).astype(np.float32) * body[:, 1] / 8
    u = np.minimum(u, np.float32(width / 3.6))  # keep the widest parts (handbag) mostly in frame
    top = 0.3 * u + (height - 8.3 * u) * rng.uniform(0.1, 0.9, b).astype(np.float32)
    cx = width * (0.5 + rng.uniform(-0.08, 0.08, b)).astype(np.float32)
    mirror = np.where(rng.random(b) < 0.5, -1, 1).astype(np.float32)
    back = rng.random(b) < 0.3
    front = ~back
    stride = rng.uniform(0.0, 0.35, b).astype(np.float32)
    swing = rng.uniform(-0.12, 0.12, b).astype(np.float32)
    sw = np.where(woman, 0.80, 0.95).astype(np.float32) * body[:, 2]  # shoulder half-width
    hw = np.where(woman, 0.80, 0.72).astype(np.float32) * body[:, 2]  # hip half-width

    cv = _Canvas(height, width, top, u, cx, mirror)

    # --- background: a wall with horizontal or vertical stripes, a floor band, two objects
    yn = (cv.yc / height)[None, :, None]
    xn = (cv.xc / width)[None, None, :]
    vertical = (rng.random(b) < 0.5)[:, None, None]
    period = rng.uniform(0.08, 0.35, b).astype(np.float32)[:, None, None]
    phase = rng.uniform(0, 1, b).astype(np.float32)[:, None, None]
    stripe = np.where(vertical, (xn / period + phase) % 1 < 0.5, (yn / period + phase) % 1 < 0.5)
    cv.label[:] = stripe  # BG is 0
    cv.label *= np.uint8(BG_STRIPE)
    np.copyto(cv.label, np.uint8(BG_FLOOR), where=yn > rng.uniform(0.72, 0.95, b).astype(np.float32)[:, None, None])
    for part in (CLUTTER_A, CLUTTER_B):
        x0 = rng.uniform(-0.2, 0.9, b) * width
        y0 = rng.uniform(-0.2, 0.9, b) * height
        cv.fill(part, rng.random(b) < 0.6, y0, y0 + rng.uniform(0.1, 0.5, b) * height,
                x0, x0 + rng.uniform(0.1, 0.4, b) * width, x0, x0 + rng.uniform(0.1, 0.4, b) * width)

    # --- behind the body
    cv.quad(BAG, backpack & front, 1.05, 3.7, -0.78, 0.78)  # shows above the shoulders
    cv.ellipse(UPPER_DARK, hoodie, 0.0, 0.95, 0.64, 0.62)  # hood
    cv.quad(HAIR, long_hair, 0.35, 1.55, -0.56, 0.56)

    # --- legs: skin, then the lower garment over them, then shoes
    leg_top = [(-0.70, -0.04), (0.04, 0.70)]
    leg_bottom = [(-0.56 - stride, -0.12 - stride), (0.12 + stride, 0.56 + stride)]
    for (tl, tr), (bl, br) in zip(leg_top, leg_bottom):
        cv.quad(SKIN, ~trousers, 4.0, 7.6, tl, tr, bl, br)
        # Shorts end at 45% of the leg, below a coat's hem; the edge follows the leg's slant.
        f = np.where(shorts, 0.45, 1.0).astype(np.float32)
        cv.quad(LOWER, trousers | shorts, 4.0, 4.0 + 3.6 * f, tl, tr, tl + (bl - tl) * f, tr + (br - tr) * f)
        cv.quad(SHOES, True, 7.55, 8.0, bl - 0.06, br + 0.06)
    cv.quad(LOWER, trousers | shorts, 3.95, 4.45, -hw, hw)
    cv.quad(LOWER, skirt, 3.95, 5.8, -hw - 0.05, hw + 0.05, -hw - 0.55, hw + 0.55)

    # --- torso: tank tops leave the shoulders bare, coats reach the knees
    cv.quad(SKIN, True, 1.0, 1.45, -0.17, 0.17)  # neck
    torso_bottom = np.where(coat, 5.0, 4.1)
    torso_top_hw = np.where(tank, 0.55, sw)
    torso_bottom_hw = np.where(coat, hw + 0.25, hw)
    cv.quad(UPPER, True, 1.3, torso_bottom, -torso_top_hw, torso_top_hw, -torso_bottom_hw, torso_bottom_hw)
    cv.quad(UPPER_DARK, (jacket | coat) & front, 1.35, torso_bottom, -0.055, 0.055)  # zip or buttons
    cv.quad(UPPER_DARK, coat, 3.55, 3.8, -hw - 0.05, hw + 0.05)  # belt
    cv.quad(UPPER_DARK, hoodie & front, 2.95, 3.75, -0.45, 0.45, -0.52, 0.52)  # front pocket
    cv.quad(BAG, backpack & back, 1.45, 3.8, -0.72, 0.72)
    cv.quad(BAG_DARK, backpack & back, 2.75, 3.6, -0.45, 0.45)
    cv.quad(HAIR, long_hair & back, 0.6, 2.6, -0.55, 0.55, -0.48, 0.48)

    # --- arms: sleeves by garment, forearms bare for t-shirts, bare arms for tank tops
    arm_part = np.where(tshirt | tank, SKIN, UPPER)
    f = np.float32(0.38)  # short sleeves cover the upper 38% of the arm
    for side, sg in ((-1, -swing), (1, swing)):
        # quad() orders each pair of edges itself, so the left arm is the right one negated.
        inner, outer, lo_in, lo_out = sw - 0.04, sw + 0.36, sw + 0.04 + sg, sw + 0.42 + sg
        cv.quad(arm_part, True, 1.35, 3.9, side * inner, side * outer, side * lo_in, side * lo_out)
        cv.quad(UPPER, tshirt, 1.3, 1.35 + 2.55 * f, side * (inner - 0.04), side * (outer + 0.04),
                side * (inner + (lo_in - inner) * f), side * (outer + (lo_out - outer) * f))
        cv.quad(SKIN, True, 3.85, 4.3, side * lo_in, side * lo_out)  # hand

    # --- bags in front
    cv.quad(BAG, backpack & front, 1.3, 3.1, -0.52, -0.32)  # straps
    cv.quad(BAG, backpack & front, 1.3, 3.1, 0.32, 0.52)
    cv.quad(BAG, shoulder_bag, 1.3, 3.45, -0.62, -0.42, 0.46, 0.66)  # strap across the chest
    cv.quad(BAG, shoulder_bag, 3.3, 4.15, 0.45, 1.1)
    cv.quad(BAG_DARK, shoulder_bag, 3.3, 3.45, 0.45, 1.1)  # flap
    hand_x = sw + 0.23 + swing
    cv.quad(BAG_DARK, handbag, 3.55, 3.95, hand_x - 0.22, hand_x + 0.22)  # handles
    cv.quad(BAG, handbag, 3.95, 4.75, hand_x - 0.4, hand_x + 0.4, hand_x - 0.48, hand_x + 0.48)

    # --- head, hair, hat
    cv.ellipse(SKIN, True, 0.0, 0.6, 0.42, 0.6)
    cv.ellipse(HAIR, front, 0.0, 0.56, 0.48, 0.6, y_max=0.4)
    cv.ellipse(HAIR, back, 0.0, 0.58, 0.47, 0.62, y_max=1.02)
    cv.quad(HAIR, long_hair & front, 0.35, 2.25, -0.56, -0.33, -0.6, -0.36)  # strands over the shoulders
    cv.quad(HAIR, long_hair & front, 0.35, 2.25, 0.33, 0.56, 0.36, 0.6)
    # Cap: flat dome + a one-sided peak; beanie: tall dome + folded cuff; sun hat: crown + wide brim.
    cv.ellipse(HAT, hat > 0, 0.0, np.where(beanie, 0.52, np.where(cap, 0.44, 0.3)),
               np.where(sun_hat, 0.42, 0.5), np.where(beanie, 0.78, np.where(cap, 0.5, 0.5)),
               y_max=np.where(beanie, 0.52, np.where(cap, 0.44, 0.3)))
    cv.quad(HAT_DARK, cap, 0.32, 0.47, -0.5, 0.98)
    cv.quad(HAT_DARK, beanie, 0.34, 0.54, -0.51, 0.51)
    cv.ellipse(HAT_DARK, sun_hat, 0.0, 0.32, 1.02, 0.14)

    # --- colours: the identity's, jittered per view so a colour is a category, not a value
    palette = np.zeros((b, N_PARTS, 3), np.float32)
    garment = _palette(GARMENT_COLORS)
    garment_none = np.concatenate([np.zeros((1, 3), np.float32), garment])  # "none" never painted
    palette[:, SKIN] = SKIN_TONES[body[:, 0].astype(np.int64)]
    palette[:, HAIR] = _palette(HAIR_COLORS)[c["hair_color"]]
    palette[:, UPPER] = garment[c["upper_color"]]
    palette[:, LOWER] = garment[c["lower_color"]]
    palette[:, SHOES] = _palette(SHOE_COLORS)[c["shoes_color"]]
    palette[:, BAG] = garment_none[c["bag_color"]]
    palette[:, HAT] = garment_none[c["hat_color"]]
    palette[:, SKIN:] += rng.normal(0, 7, (b, N_PARTS - SKIN, 3)).astype(np.float32)
    for dark, base in ((UPPER_DARK, UPPER), (BAG_DARK, BAG), (HAT_DARK, HAT)):
        palette[:, dark] = palette[:, base] * 0.6 + 8
    # Muted, tinted backgrounds, so that the saturated garments stand out from them.
    bg_base = rng.uniform(70, 205, (b, 1)).astype(np.float32) + rng.uniform(-28, 28, (b, 3)).astype(np.float32)
    palette[:, BG] = bg_base
    palette[:, BG_STRIPE] = bg_base + rng.uniform(-16, 16, (b, 1)).astype(np.float32)
    palette[:, BG_FLOOR] = bg_base + rng.uniform(-45, 25, (b, 1)).astype(np.float32)
    palette[:, CLUTTER_A] = bg_base + rng.uniform(-55, 55, (b, 3)).astype(np.float32)
    palette[:, CLUTTER_B] = bg_base + rng.uniform(-55, 55, (b, 3)).astype(np.float32)
    # Lighting: brightness and a slight colour cast scale every colour alike; a left-right
    # falloff scales columns (repeated per channel, so the multiply runs along whole rows).
    palette *= rng.uniform(0.8, 1.15, (b, 1, 1)).astype(np.float32) * rng.uniform(0.95, 1.05, (b, 1, 3)).astype(np.float32)
    falloff = 1 + rng.uniform(-0.15, 0.15, (b, 1, 1)).astype(np.float32) * np.repeat(2 * xn - 1, 3, axis=-1)
    noise = rng.integers(0, len(noise_bank), b)

    out = np.empty((b, height, width * 3), np.uint8)
    # Composited a few images at a time so that the float intermediates stay in cache.
    for i in range(0, b, 16):
        sl = slice(i, i + 16)
        label = cv.label[sl]
        index = label + (np.arange(len(label), dtype=np.intp) * N_PARTS)[:, None, None]
        img = np.take(palette[sl].reshape(-1, 3), index, axis=0).reshape(len(label), height, width * 3)
        img *= falloff[sl]
        img += noise_bank[noise[sl]]  # tiles of different strength
        np.clip(img, 0, 255, out=img)
        out[sl] = img
    return out.reshape(b, height, width, 3)


# ---------------------------------------------------------------- captions

_COLOR_WORDS = {"grey": ("grey", "gray"), "purple": ("purple", "violet"), "blonde": ("blonde", "blond", "fair"),
                "ginger": ("ginger", "red")}
_SUBJECTS = {"man": ("man", "guy", "male", "gentleman", "person", "pedestrian"),
             "woman": ("woman", "lady", "female", "girl", "person", "pedestrian")}
_PRONOUN = {"man": "he", "woman": "she"}
_UPPER_WORDS = {"t-shirt": ("t-shirt", "tee", "short-sleeved shirt"), "tank top": ("tank top", "sleeveless top"),
                "jacket": ("jacket", "zip-up jacket"), "hoodie": ("hoodie", "hooded sweatshirt"),
                "coat": ("coat", "long coat", "overcoat")}
_LOWER_WORDS = {"trousers": ("trousers", "pants", "long pants"), "shorts": ("shorts", "short pants"),
                "skirt": ("skirt", "knee-length skirt")}
_SHOE_WORDS = ("shoes", "sneakers", "trainers")
_BAG_WORDS = {"backpack": ("backpack", "rucksack"), "handbag": ("handbag", "purse"),
              "shoulder bag": ("shoulder bag", "messenger bag", "crossbody bag")}
_HAT_WORDS = {"cap": ("cap", "baseball cap"), "beanie": ("beanie", "knit hat"), "sun hat": ("sun hat", "wide-brimmed hat")}
_PLURAL = {"trousers", "pants", "long pants", "shorts", "short pants"}


def _article(phrase: str) -> str:
    return ("an " if phrase[0] in "aeiou" else "a ") + phrase


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _caption(rng: random.Random, a: dict[str, str]) -> str:
    def color(name: str) -> str:
        return rng.choice(_COLOR_WORDS.get(name, (name,)))

    upper = _article(f"{color(a['upper_color'])} {rng.choice(_UPPER_WORDS[a['upper']])}")
    lower_word = rng.choice(_LOWER_WORDS[a["lower"]])
    lower = f"{color(a['lower_color'])} {lower_word}"
    lower = lower if lower_word in _PLURAL else _article(lower)
    shoes = f"{color(a['shoes_color'])} {rng.choice(_SHOE_WORDS)}"
    hair = (f"{a['hair_length']} {color(a['hair_color'])} hair" if rng.random() < 0.7
            else f"{color(a['hair_color'])} hair that is {a['hair_length']}")
    worn = [upper, lower, shoes]
    if a["hat"] != "none":
        worn.append(_article(f"{color(a['hat_color'])} {rng.choice(_HAT_WORDS[a['hat']])}"))
    bag = None if a["bag"] == "none" else _article(f"{color(a['bag_color'])} {rng.choice(_BAG_WORDS[a['bag']])}")
    # Real annotators leave things out: sometimes the shoes or the hair go unmentioned.
    if rng.random() < 0.2:
        if rng.random() < 0.5:
            worn.remove(shoes)
        else:
            hair = None
    worn = rng.sample(worn, len(worn))
    subject = rng.choice(_SUBJECTS[a["gender"]])
    pron = _PRONOUN[a["gender"]]
    carry = rng.choice(("carrying", "holding")) if bag else None
    style = rng.randrange(4)
    if style == 0:  # one sentence: "A woman in ..., with ..., carrying ...."
        parts = [f"{rng.choice(('in', 'wearing', 'dressed in'))} {_join(worn)}"]
        if hair:
            parts.append(f"with {hair}")
        if bag:
            parts.append(f"{carry} {bag}")
        parts = rng.sample(parts, len(parts))
        text = f"{_article(subject)} {', '.join(parts)}."
    elif style == 1:  # several sentences: "The person wears .... She has .... She carries ...."
        sentences = [f"{pron} {rng.choice(('wears', 'is wearing', 'has on'))} {_join(worn)}."]
        if hair:
            sentences.append(f"{pron} has {hair}.")
        if bag:
            sentences.append(f"{pron} {rng.choice(('carries', 'is carrying', 'has'))} {bag}.")
        elif rng.random() < 0.5:
            sentences.append(f"{pron} is not carrying a bag.")
        sentences = rng.sample(sentences, len(sentences))
        sentences[0] = f"the {subject} {sentences[0].split(' ', 1)[1]}"
        text = " ".join(s[0].upper() + s[1:] for s in sentences)
    elif style == 2:  # terse list, as many annotators write
        items = list(worn) + ([hair] if hair else []) + ([bag] if bag else [])
        items = rng.sample(items, len(items))
        text = f"{subject} with {_join(items)}."
    else:  # "This man has ... and is dressed in ...; he carries ...."
        text = f"this {subject} "
        text += f"has {hair} and is dressed in {_join(worn)}" if hair else f"is dressed in {_join(worn)}"
        text += f"; {pron} carries {bag}." if bag else "."
    return text[0].upper() + text[1:]


def _captions(rng: random.Random, attrs: dict[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    for _ in range(CAPTIONS_PER_IMAGE):
        text = _caption(rng, attrs)
        for _retry in range(4):  # the two captions of an image should not be identical
            if text not in out:
                break
            text = _caption(rng, attrs)
        out.append(text)
    return tuple(out)


# ---------------------------------------------------------------- generation


def _generate(out: Path, seed: int, opts: dict[str, Any]) -> None:
    started = time.perf_counter()
    height, width = opts["image_size"]
    views = opts["views_per_identity"]
    identities, hard = _sample_identities(np.random.default_rng([seed, 0]), opts["identities"],
                                          opts["hard_negative_fraction"])
    body_rng = np.random.default_rng([seed, 1])
    bodies = np.stack([
        body_rng.integers(0, len(SKIN_TONES), len(identities)).astype(np.float32),
        body_rng.uniform(0.94, 1.0, len(identities)).astype(np.float32),
        body_rng.uniform(0.92, 1.08, len(identities)).astype(np.float32),
    ], axis=1)
    for copy, source, _ in hard:  # near-copies share the build: only the attribute differs
        bodies[copy] = bodies[source]

    digest = hashlib.sha256()
    splits: dict[str, dict[str, Any]] = {}
    stats: dict[str, dict[str, int]] = {}
    first = 0
    for si, (name, n) in enumerate(zip(SPLITS, opts["identities"])):
        pids = [pid for pid in range(first, first + n) for _ in range(views)]
        rng = np.random.default_rng([seed, 2, si])
        noise_bank = rng.standard_normal((8, height, width * 3), dtype=np.float32)
        noise_bank *= np.linspace(2, 7, len(noise_bank), dtype=np.float32)[:, None, None]
        # Written straight to disk chunk by chunk: a split never has to fit in memory.
        images = np.lib.format.open_memmap(out / f"{name}.npy", mode="w+", dtype=np.uint8,
                                           shape=(len(pids), height, width, 3))
        for start in range(0, len(pids), _CHUNK):
            chunk = pids[start:start + _CHUNK]
            rendered = _render(rng, [identities[p] for p in chunk], bodies[chunk], noise_bank, height, width)
            images[start:start + len(chunk)] = rendered
            digest.update(rendered.tobytes())
        images.flush()
        del images
        # Python's generator: per-word choices cost a tenth of numpy's; seeding by string is stable.
        caption_rng = random.Random(f"{NAME}/{seed}/{name}/captions")
        splits[name] = {
            "ids": [f"{name}/{p:05d}_{v}" for p in range(first, first + n) for v in range(views)],
            "identities": pids,
            "captions": [_captions(caption_rng, identities[p]) for p in pids],
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
