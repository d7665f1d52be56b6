"""The RISCM-style caption CSV loader on fixtures in that format (image path + caption per
row, one CSV per split): grouping, the duplicate-caption report, options for other column
names and wide files, and its clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from vlbench.errors import UserError
from vlbench.plugins.datasets import caption_csv

FIXTURE = Path(__file__).parent / "fixtures" / "caption_csv"


def load(root: Path, **options):
    found = []
    caption_csv.vlbench_register_datasets(register=found.append)
    (spec,) = found
    assert spec.provides == {"image", "captions"}
    return spec.factory(cache_dir=root, seed=0, root=str(root), **options)


@pytest.fixture
def copy(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "data")
    return tmp_path / "data"


def test_rows_group_into_images_with_their_captions_in_file_order():
    data = load(FIXTURE)
    train = data.splits["train"]
    assert list(train.ids) == ["rsicd/airport_1.jpg", "rsicd/beach_2.jpg", "ucm/forest_03.tif", "sydney/residential_4.jpg"]
    assert train.captions[0] == ("many planes are parked near a terminal .", "an airport with two runways, seen from above")
    assert train.captions[1][1] == '"a beach, with waves" and umbrellas'  # quoted CSV cell, commas kept
    assert train.load_image(2).shape == (8, 8, 3)  # a .tif read as RGB
    assert train.load_image.path(2) == FIXTURE / "images" / "ucm" / "forest_03.tif"
    assert [len(data.splits[s]) for s in ("train", "val", "test")] == [4, 2, 2]
    assert data.info["captions"] == {"train": 7, "val": 2, "test": 2}


def test_duplicate_report_counts_repeats_and_shared_captions():
    report = load(FIXTURE).info["duplicates"]["train"]
    assert report["same_image_repeats"] == report["same_image_repeats_dropped"] == 1
    assert report["same_image_examples"] == [
        {"image": "rsicd/airport_1.jpg", "caption": "Many planes are parked near  a terminal"}
    ]
    assert report["captions_on_several_images"] == 1 and report["images_sharing_a_caption"] == 2
    assert report["several_images_examples"] == [{"caption": "many green trees", "images": 2}]
    kept = load(FIXTURE, drop_duplicates=False)
    assert len(kept.splits["train"].captions[0]) == 3
    assert kept.info["duplicates"]["train"]["same_image_repeats_dropped"] == 0


def test_other_column_names_and_wide_files(copy):
    (copy / "train.csv").write_text(
        "source,filepath,caption_1,caption_2\nrsicd,rsicd/airport_1.jpg,a terminal,planes\nrsicd,rsicd/beach_2.jpg,a beach,\n"
    )
    (copy / "val.csv").write_text("filepath,caption_1,caption_2\nrsicd/airport_5.jpg,a plane,an apron\n")
    (copy / "test.csv").write_text("filepath,caption_1,caption_2\nrsicd/beach_7.jpg,a beach,\n")
    data = load(copy, image_column="filepath", caption_column=["caption_1", "caption_2"])
    assert data.splits["train"].captions == (("a terminal", "planes"), ("a beach",))


def test_missing_column_names_the_option(copy):
    with pytest.raises(UserError, match=r"no column\(s\) \['text'\]; the file has \['image', 'caption'\].*caption_column"):
        load(copy, caption_column="text")


@pytest.mark.parametrize(
    "content, message",
    [
        ("image,caption\n,a caption\n", "line 2: empty 'image' cell"),
        ("image,caption\nrsicd/airport_1.jpg,\n", r"line 2: no caption in \['caption'\]"),
        ("image,caption\n", "no rows under the header"),
        ("", "not a readable CSV"),
        ("image,caption\nrsicd/missing.jpg,a caption\n", "1 images are not under"),
    ],
)
def test_bad_rows_are_clear_errors(copy, content, message):
    (copy / "train.csv").write_text(content)
    with pytest.raises(UserError, match=message):
        load(copy)


def test_an_image_in_two_splits_is_refused(copy):
    (copy / "test.csv").write_text("image,caption\nrsicd/airport_1.jpg,a caption\n")
    with pytest.raises(UserError, match="'rsicd/airport_1.jpg' is also in the train split"):
        load(copy)


def test_missing_file_and_options(tmp_path):
    with pytest.raises(UserError, match="set the option root"):
        caption_csv.factory(cache_dir=tmp_path, seed=0)
    with pytest.raises(UserError, match="unknown option"):
        load(tmp_path, caption="x")
    with pytest.raises(UserError, match="train.csv: no such file"):
        load(tmp_path)
