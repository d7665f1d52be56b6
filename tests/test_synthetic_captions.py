"""The synthetic captioned-shapes dataset: registration, determinism by seed, cache reuse,
captions fully determined by what is drawn, and option validation."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from vlbench.errors import UserError
from vlbench.plugins.datasets import synthetic_captions as synth
from vlbench.plugins.tasks._caption_metrics import ptb_tokenize
from vlbench.testing.contracts import check_dataset

SMALL = {"n_images": [40, 12, 12], "image_size": [48, 48]}


def build(cache_dir: Path, seed: int = 0, **options):
    found = []
    synth.vlbench_register_datasets(register=found.append)
    (spec,) = found
    assert spec.name == "synthetic_captions" and spec.provides == frozenset({"image", "captions"}) and spec.synthetic
    return spec.factory(cache_dir=cache_dir, seed=seed, **{**SMALL, **options})


def test_passes_the_dataset_contract(tmp_path: Path) -> None:
    found = []
    synth.vlbench_register_datasets(register=found.append)
    check_dataset(found[0], tmp_path, **SMALL)


def test_splits_images_and_captions(tmp_path: Path) -> None:
    data = build(tmp_path)
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [40, 12, 12]
    train = data.splits["train"]
    image = train.load_image(0)
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert all(len(caps) == 5 and len(set(caps)) == 5 for caps in train.captions)
    words = set(synth.vocabulary(mention_colour=False))
    assert 25 <= len(words) <= 40 and not words & set(synth.COLORS)
    for caps in train.captions:
        for caption in caps:
            assert ptb_tokenize(caption) == caption and set(caption.split()) <= words
    assert len(set(train.ids) | set(data.splits["val"].ids)) == 52


@pytest.mark.parametrize("mention_colour", [False, True])
def test_captions_name_exactly_what_is_drawn(tmp_path: Path, mention_colour: bool) -> None:
    data = build(tmp_path, mention_colour=mention_colour)
    meta = json.loads((Path(data.info["cache"]["path"]) / "meta.json").read_text())
    split = data.splits["train"]
    count_words = {1: {"a", "one"}, 2: {"two"}, 3: {"three"}, 4: {"four"}}
    for i, content in enumerate(meta["splits"]["train"]["contents"]):
        image = split.load_image(i).astype(int)
        target = np.array(synth.COLORS[content["colour"]])
        # Pixels close to the glyph colour: present, and in as many separate cells as the count says.
        near = np.abs(image - target).max(axis=-1) < 45
        cells = {(y * 3 // 48, x * 3 // 48) for y, x in zip(*np.nonzero(near), strict=True)}
        assert len(cells) >= content["count"]
        for caption in split.captions[i]:
            words = caption.split()
            assert (content["colour"] in words) == mention_colour
            assert set(words) & set(synth._SIZE_WORDS[content["size"]])
            shape = content["shape"] + ("s" if content["count"] > 1 else "")
            assert shape in words
            assert set(words) & count_words[content["count"]]
            assert not set(words) & (set(synth.COLORS) - {content["colour"]})


def test_deterministic_by_seed_and_cached(tmp_path: Path) -> None:
    a = build(tmp_path / "a", seed=3)
    b = build(tmp_path / "b", seed=3)
    c = build(tmp_path / "c", seed=4)
    assert a.info["checksum"] == b.info["checksum"] != c.info["checksum"]
    assert a.splits["val"].captions == b.splits["val"].captions
    assert np.array_equal(a.splits["test"].load_image(5), b.splits["test"].load_image(5))
    assert not a.info["cache"]["reused"]
    again = build(tmp_path / "a", seed=3)
    assert again.info["cache"]["reused"] and again.info["checksum"] == a.info["checksum"]
    assert len([p for p in (tmp_path / "a").iterdir() if not p.name.startswith(".")]) == 1


def test_options_change_the_data(tmp_path: Path) -> None:
    one = build(tmp_path, captions_per_image=1, max_count=1)
    assert all(len(caps) == 1 for caps in one.splits["train"].captions)
    assert all(re.search(r"\b(a|one)\b", caps[0]) for caps in one.splits["train"].captions)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"n_images": [10, 10]}, "'n_images' must be a list of 3 integers"),
        ({"n_images": [10, 1, 10]}, "'n_images'"),
        ({"image_size": [16, 16]}, "'image_size' must be a list of 2 integers from 32"),
        ({"captions_per_image": 7}, "'captions_per_image' must be an integer from 1 to 6"),
        ({"captions_per_image": True}, "'captions_per_image'"),
        ({"max_count": 0}, "'max_count' must be an integer from 1 to 4"),
        ({"colours": 3}, "unknown option\\(s\\) \\['colours'\\]"),
        ({"mention_colour": 1}, "'mention_colour' must be true or false"),
        ({"distractors": -1}, "'distractors' must be an integer from 0 to 10"),
    ],
)
def test_bad_options_are_refused_before_anything_is_written(tmp_path: Path, options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        build(tmp_path / "cache", **options)
    assert not (tmp_path / "cache").exists()
