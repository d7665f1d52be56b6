"""Synthetic scenes, part 2: the captions. Each names some of the image's objects (the poorly
drawn ones more often, sometimes with an adjective saying how) and now and then one that is
absent, in one of four sentence forms around a place."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vlbench.plugins.datasets._scene_render import CLASS_NAMES, FAINT, OCCLUDED, SMALL, VISIBLE

from ._english import article, join

_POOR_WORDS = {
    SMALL: ("small", "tiny", "distant"),
    FAINT: ("faint", "blurry", "pale"),
    OCCLUDED: ("partly hidden", "half-covered"),
}
_PLACES = ("street", "park", "field", "room", "beach", "garden", "yard", "market")


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
        phrases.append(article(word))
    listed = join([phrases[i] for i in rng.permutation(len(phrases))])
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


def write_captions(
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
