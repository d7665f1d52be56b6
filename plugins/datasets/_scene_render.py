"""Synthetic scenes, part 1: the classes, their long-tailed label draws and the rendering.

Each image shows one object per label on a textured background with distractor blobs; an
object class is a glyph (one of six shapes in one of three colours). Some objects are drawn
poorly (small, faint or occluded: their drawing mode). Rendering is vectorised numpy over a
chunk of images.
"""

from __future__ import annotations

import numpy as np

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


def _first_label_probability() -> float:
    """Bernoulli rate of class 0 such that, after giving class 0 to every image that drew no
    label at all, class 0 ends up in PREVALENCE[0] of the images."""
    none_other = float(np.prod([1 - p for p in PREVALENCE[1:]]))
    return (PREVALENCE[0] - none_other) / (1 - none_other)


def sample_labels(rng: np.random.Generator, n: int) -> np.ndarray:
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


def render(rng: np.random.Generator, labels: np.ndarray, modes: np.ndarray, height: int, width: int) -> np.ndarray:
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
