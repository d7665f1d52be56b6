"""Synthetic pedestrians, part 1: the attribute vocabulary (garments, colours, hair, bags,
hats) and the sampling of identities, with one-attribute near-copies as hard negatives."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

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
SHOE_COLORS: dict[str, tuple[int, int, int]] = {k: GARMENT_COLORS[k] for k in ("black", "white", "brown", "red", "blue", "grey")}
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


def sample_identities(
    rng: np.random.Generator, counts: Sequence[int], fraction: float
) -> tuple[list[dict[str, str]], list[tuple[int, int, str]]]:
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
