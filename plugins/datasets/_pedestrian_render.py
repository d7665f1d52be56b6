"""Synthetic pedestrians, part 2: rendering. Everything visible is drawn with numpy on a batch
of label maps at once (one interval per row per shape), then coloured, lit and noised in a
few whole-batch operations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vlbench.plugins.datasets._pedestrian_attributes import (
    ATTRIBUTES,
    GARMENT_COLORS,
    HAIR_COLORS,
    SHOE_COLORS,
    SKIN_TONES,
    VOCAB,
)

# ---------------------------------------------------------------- rendering

# Label-map parts, painted back to front, then coloured from a per-image palette.
# The background is parts too (wall, stripes, floor, two objects), so that compositing is a
# single palette lookup per pixel.
(BG, BG_STRIPE, BG_FLOOR, CLUTTER_A, CLUTTER_B, SKIN, HAIR, UPPER, UPPER_DARK, LOWER, SHOES, BAG, BAG_DARK, HAT, HAT_DARK) = (
    range(15)
)
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
            part,
            on,
            self.top + self.unit * np.asarray(y0, np.float32),
            self.top + self.unit * np.asarray(y1, np.float32),
            np.minimum(ends[0], ends[1]),
            np.maximum(ends[0], ends[1]),
            np.minimum(ends[2], ends[3]),
            np.maximum(ends[2], ends[3]),
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


def render(
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
        cv.fill(
            part,
            rng.random(b) < 0.6,
            y0,
            y0 + rng.uniform(0.1, 0.5, b) * height,
            x0,
            x0 + rng.uniform(0.1, 0.4, b) * width,
            x0,
            x0 + rng.uniform(0.1, 0.4, b) * width,
        )

    # --- behind the body
    cv.quad(BAG, backpack & front, 1.05, 3.7, -0.78, 0.78)  # shows above the shoulders
    cv.ellipse(UPPER_DARK, hoodie, 0.0, 0.95, 0.64, 0.62)  # hood
    cv.quad(HAIR, long_hair, 0.35, 1.55, -0.56, 0.56)

    # --- legs: skin, then the lower garment over them, then shoes
    leg_top = [(-0.70, -0.04), (0.04, 0.70)]
    leg_bottom = [(-0.56 - stride, -0.12 - stride), (0.12 + stride, 0.56 + stride)]
    for (tl, tr), (bl, br) in zip(leg_top, leg_bottom, strict=True):
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
    sleeve = np.float32(0.38)  # short sleeves cover the upper 38% of the arm
    for side, sg in ((-1, -swing), (1, swing)):
        # quad() orders each pair of edges itself, so the left arm is the right one negated.
        inner, outer, lo_in, lo_out = sw - 0.04, sw + 0.36, sw + 0.04 + sg, sw + 0.42 + sg
        cv.quad(arm_part, True, 1.35, 3.9, side * inner, side * outer, side * lo_in, side * lo_out)
        cv.quad(
            UPPER,
            tshirt,
            1.3,
            1.35 + 2.55 * sleeve,
            side * (inner - 0.04),
            side * (outer + 0.04),
            side * (inner + (lo_in - inner) * sleeve),
            side * (outer + (lo_out - outer) * sleeve),
        )
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
    cv.ellipse(
        HAT,
        hat > 0,
        0.0,
        np.where(beanie, 0.52, np.where(cap, 0.44, 0.3)),
        np.where(sun_hat, 0.42, 0.5),
        np.where(beanie, 0.78, np.where(cap, 0.5, 0.5)),
        y_max=np.where(beanie, 0.52, np.where(cap, 0.44, 0.3)),
    )
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
