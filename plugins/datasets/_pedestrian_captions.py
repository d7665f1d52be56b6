"""Synthetic pedestrians, part 3: captions written from an identity's attributes with varied
templates and synonyms, two different ones per image."""

from __future__ import annotations

import random

from ._english import article, join

CAPTIONS_PER_IMAGE = 2

# ---------------------------------------------------------------- captions

_COLOR_WORDS = {
    "grey": ("grey", "gray"),
    "purple": ("purple", "violet"),
    "blonde": ("blonde", "blond", "fair"),
    "ginger": ("ginger", "red"),
}
_SUBJECTS = {
    "man": ("man", "guy", "male", "gentleman", "person", "pedestrian"),
    "woman": ("woman", "lady", "female", "girl", "person", "pedestrian"),
}
_PRONOUN = {"man": "he", "woman": "she"}
_UPPER_WORDS = {
    "t-shirt": ("t-shirt", "tee", "short-sleeved shirt"),
    "tank top": ("tank top", "sleeveless top"),
    "jacket": ("jacket", "zip-up jacket"),
    "hoodie": ("hoodie", "hooded sweatshirt"),
    "coat": ("coat", "long coat", "overcoat"),
}
_LOWER_WORDS = {
    "trousers": ("trousers", "pants", "long pants"),
    "shorts": ("shorts", "short pants"),
    "skirt": ("skirt", "knee-length skirt"),
}
_SHOE_WORDS = ("shoes", "sneakers", "trainers")
_BAG_WORDS = {
    "backpack": ("backpack", "rucksack"),
    "handbag": ("handbag", "purse"),
    "shoulder bag": ("shoulder bag", "messenger bag", "crossbody bag"),
}
_HAT_WORDS = {"cap": ("cap", "baseball cap"), "beanie": ("beanie", "knit hat"), "sun hat": ("sun hat", "wide-brimmed hat")}
_PLURAL = {"trousers", "pants", "long pants", "shorts", "short pants"}


def _caption(rng: random.Random, a: dict[str, str]) -> str:
    def color(name: str) -> str:
        return rng.choice(_COLOR_WORDS.get(name, (name,)))

    upper = article(f"{color(a['upper_color'])} {rng.choice(_UPPER_WORDS[a['upper']])}")
    lower_word = rng.choice(_LOWER_WORDS[a["lower"]])
    lower = f"{color(a['lower_color'])} {lower_word}"
    lower = lower if lower_word in _PLURAL else article(lower)
    shoes = f"{color(a['shoes_color'])} {rng.choice(_SHOE_WORDS)}"
    hair: str | None = (
        f"{a['hair_length']} {color(a['hair_color'])} hair"
        if rng.random() < 0.7
        else f"{color(a['hair_color'])} hair that is {a['hair_length']}"
    )
    worn = [upper, lower, shoes]
    if a["hat"] != "none":
        worn.append(article(f"{color(a['hat_color'])} {rng.choice(_HAT_WORDS[a['hat']])}"))
    bag = None if a["bag"] == "none" else article(f"{color(a['bag_color'])} {rng.choice(_BAG_WORDS[a['bag']])}")
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
        parts = [f"{rng.choice(('in', 'wearing', 'dressed in'))} {join(worn)}"]
        if hair:
            parts.append(f"with {hair}")
        if bag:
            parts.append(f"{carry} {bag}")
        parts = rng.sample(parts, len(parts))
        text = f"{article(subject)} {', '.join(parts)}."
    elif style == 1:  # several sentences: "The person wears .... She has .... She carries ...."
        sentences = [f"{pron} {rng.choice(('wears', 'is wearing', 'has on'))} {join(worn)}."]
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
        text = f"{subject} with {join(items)}."
    else:  # "This man has ... and is dressed in ...; he carries ...."
        text = f"this {subject} "
        text += f"has {hair} and is dressed in {join(worn)}" if hair else f"is dressed in {join(worn)}"
        text += f"; {pron} carries {bag}." if bag else "."
    return text[0].upper() + text[1:]


def captions(rng: random.Random, attrs: dict[str, str]) -> tuple[str, ...]:
    out: list[str] = []
    for _ in range(CAPTIONS_PER_IMAGE):
        text = _caption(rng, attrs)
        for _retry in range(4):  # the two captions of an image should not be identical
            if text not in out:
                break
            text = _caption(rng, attrs)
        out.append(text)
    return tuple(out)
