"""karpathy_json and coco_captions on small fixtures in the exact public formats, and their bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vlbench.errors import UserError
from vlbench.plugins.datasets import coco_captions, karpathy_json


def _image(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 16, 3), value, np.uint8)).save(path)


def _sentence(text: str, imgid: int, sentid: int) -> dict:
    return {"tokens": text.lower().split(), "raw": text, "imgid": imgid, "sentid": sentid}


def write_karpathy(root: Path, kind: str = "flickr30k") -> Path:
    """dataset_<kind>.json as in caption_datasets.zip, and the images it names."""
    splits = ["train", "train", "restval", "val", "test", "test"]
    images, sentid = [], 0
    for imgid, split in enumerate(splits):
        entry = {"filename": f"{1000 + imgid}.jpg", "imgid": imgid, "split": split, "sentences": [], "sentids": []}
        if kind == "coco":
            entry.update(filepath="train2014" if split != "test" else "val2014", cocoid=9000 + imgid)
        for c in range(2 + imgid % 2):
            entry["sentences"].append(_sentence(f"A dog number {imgid} runs {c} .", imgid, sentid))
            entry["sentids"].append(sentid)
            sentid += 1
        images.append(entry)
        folder = root / karpathy_json.IMAGE_FOLDERS[kind] / entry.get("filepath", "")
        _image(folder / entry["filename"], 10 * imgid)
    file = root / f"dataset_{kind}.json"
    file.write_text(json.dumps({"images": images, "dataset": kind}))
    return file


@pytest.mark.parametrize("kind", ["flickr30k", "flickr8k", "coco"])
def test_karpathy_splits_captions_and_images(tmp_path: Path, kind: str) -> None:
    write_karpathy(tmp_path, kind)
    ds = karpathy_json.build(None, 0, root=str(tmp_path))
    assert {n: len(s) for n, s in ds.splits.items()} == {"train": 3, "val": 1, "test": 2}  # restval joins train
    train = ds.splits["train"]
    assert train.captions[0] == ("A dog number 0 runs 0 .", "A dog number 0 runs 1 .")
    assert len(train.captions[1]) == 3 and train.identities is None
    assert ds.splits["test"].load_image(1)[0, 0, 0] == 50
    assert ds.info["source_dataset"] == kind
    dropped = karpathy_json.build(None, 0, root=str(tmp_path), restval="drop")
    assert len(dropped.splits["train"]) == 2


def test_karpathy_tokens_stand_in_for_a_missing_raw(tmp_path: Path) -> None:
    file = write_karpathy(tmp_path)
    data = json.loads(file.read_text())
    del data["images"][0]["sentences"][0]["raw"]
    file.write_text(json.dumps(data))
    assert karpathy_json.build(None, 0, root=str(tmp_path)).splits["train"].captions[0][0] == "a dog number 0 runs 0 ."


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("no_split", "images[1], key 'split': missing"),
        ("bad_split", "images[1], key 'split': 'dev'"),
        ("empty_sentences", "images[1], key 'sentences'"),
        ("empty_raw", "images[1].sentences[0]"),
        ("missing_image", "1 of 6 images named in"),
        ("not_json", "not valid JSON"),
        ("no_test", "no image has split 'test'"),
    ],
)
def test_karpathy_bad_input_names_file_and_key(tmp_path: Path, damage: str, message: str) -> None:
    file = write_karpathy(tmp_path)
    data = json.loads(file.read_text())
    entry = data["images"][1]
    if damage == "no_split":
        del entry["split"]
    elif damage == "bad_split":
        entry["split"] = "dev"
    elif damage == "empty_sentences":
        entry["sentences"] = []
    elif damage == "empty_raw":
        entry["sentences"][0]["raw"] = "  "
    elif damage == "missing_image":
        (tmp_path / "flickr30k-images" / entry["filename"]).unlink()
    elif damage == "no_test":
        data["images"] = [e for e in data["images"] if e["split"] != "test"]
    file.write_text("{oops" if damage == "not_json" else json.dumps(data))
    with pytest.raises(UserError, match=re.escape(message)) as info:
        karpathy_json.build(None, 0, root=str(tmp_path))
    assert str(file) in str(info.value)


def test_karpathy_root_problems(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="option 'root' is not set"):
        karpathy_json.build(None, 0)
    with pytest.raises(UserError, match="none of"):
        karpathy_json.build(None, 0, root=str(tmp_path))
    with pytest.raises(UserError, match="restval"):
        karpathy_json.build(None, 0, root=str(tmp_path), restval="val")


def write_coco(root: Path, n_val: int = 6) -> tuple[Path, Path]:
    """annotations/captions_{train,val}2014.json as the COCO archive has them, and the images."""
    files = []
    for split, n in (("train", 4), ("val", n_val)):
        images, annotations = [], []
        for i in range(n):
            image_id = (1 if split == "train" else 2) * 100_000 + i * 7  # ids need not be contiguous
            name = f"COCO_{split}2014_{image_id:012d}.jpg"
            images.append(
                {
                    "id": image_id,
                    "width": 16,
                    "height": 12,
                    "file_name": name,
                    "license": 1,
                    "flickr_url": "",
                    "coco_url": "",
                    "date_captured": "2013-11-14 16:28:13",
                }
            )
            for c in range(5):
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "caption": f"A cat {i} sits {c}."})
            _image(root / f"{split}2014" / name, i)
        file = root / "annotations" / f"captions_{split}2014.json"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(
            json.dumps(
                {
                    "info": {"year": 2014},
                    "licenses": [{"id": 1, "name": "x", "url": ""}],
                    "images": images,
                    "annotations": annotations,
                }
            )
        )
        files.append(file)
    return files[0], files[1]


def test_coco_captions_splits(tmp_path: Path) -> None:
    write_coco(tmp_path)
    ds = coco_captions.build(None, 0, root=str(tmp_path))
    assert {n: len(s) for n, s in ds.splits.items()} == {"train": 4, "val": 3, "test": 3}
    assert all(len(c) == 5 for s in ds.splits.values() for c in s.captions)
    assert not set(ds.splits["val"].ids) & set(ds.splits["test"].ids)
    assert ds.splits["train"].load_image(2)[0, 0, 0] == 2
    again = coco_captions.build(None, 0, root=str(tmp_path))
    assert again.splits["val"].ids == ds.splits["val"].ids  # split by seed, reproducible


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("unknown_image", "annotations[3].image_id"),
        ("no_caption", "empty caption list"),
        ("blank_caption", "annotations[0].caption"),
        ("missing_image", "images named in"),
        ("no_annotations", "annotations"),
    ],
)
def test_coco_bad_input_names_file_and_key(tmp_path: Path, damage: str, message: str) -> None:
    _, val = write_coco(tmp_path)
    data = json.loads(val.read_text())
    if damage == "unknown_image":
        data["annotations"][3]["image_id"] = 42
    elif damage == "no_caption":
        data["annotations"] = [a for a in data["annotations"] if a["image_id"] != data["images"][2]["id"]]
    elif damage == "blank_caption":
        data["annotations"][0]["caption"] = ""
    elif damage == "missing_image":
        (tmp_path / "val2014" / data["images"][0]["file_name"]).unlink()
    elif damage == "no_annotations":
        del data["annotations"]
    val.write_text(json.dumps(data))
    with pytest.raises(UserError, match=re.escape(message)) as info:
        coco_captions.build(None, 0, root=str(tmp_path))
    assert str(val) in str(info.value)
