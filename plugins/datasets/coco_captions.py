"""``coco_captions``: COCO from its captions annotation files (``captions_train2014.json`` style).

Each file (studies.md §3.4) is ``{"info", "licenses", "images": [{"id", "file_name", ...}],
"annotations": [{"id", "image_id", "caption"}]}``, about 5 captions per image. Train is the
train file; the val file's images are split by seed into val and test (``val_fraction`` of
them to val), since the official test captions are not public. Images are read from
``<root>/<train_images>/`` and ``<root>/<val_images>/``; 2017 files work by setting the four
path options. Task-agnostic (images + all captions per image); nothing is downloaded.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.types import Dataset, DatasetSpec, Register, Split

from ._caption_files import check_images_exist, clean_caption, read_json, require_root
from .pedes_json import _ImageFiles

NAME = "coco_captions"
DEFAULTS: dict[str, Any] = {
    "root": "",
    "train_annotations": "annotations/captions_train2014.json",
    "val_annotations": "annotations/captions_val2014.json",
    "train_images": "train2014",
    "val_images": "val2014",
    "val_fraction": 0.5,  # share of the val file's images used for val; the rest is test
}


def check_options(options: Mapping[str, Any]) -> None:
    if not 0.0 < options["val_fraction"] < 1.0:
        raise UserError(
            f"dataset {NAME!r}: option val_fraction={options['val_fraction']}; use a fraction strictly between 0 and 1."
        )


def _fail(file: Path, where: str, problem: str) -> UserError:
    return UserError(
        f'{file}: {where}: {problem}. A COCO captions file has "images" [{{"id", "file_name"}}] and '
        '"annotations" [{"image_id", "caption"}]; restore it from the annotations archive.'
    )


def _read(file: Path, images_dir: Path) -> tuple[list[tuple[str, tuple[str, ...]]], str]:
    """(file_name, captions) per image, in image-id order, and the file's sha256."""
    raw, digest = read_json(file)
    if not isinstance(raw, dict):
        raise _fail(file, "<top level>", f"expected an object, got {type(raw).__name__}")
    for key in ("images", "annotations"):
        if not isinstance(raw.get(key), list):
            raise _fail(file, key, "missing or not a list")
    names: dict[int, str] = {}
    for i, image in enumerate(raw["images"]):
        if not isinstance(image, dict) or not isinstance(image.get("id"), int) or not isinstance(image.get("file_name"), str):
            raise _fail(file, f"images[{i}]", f'needs an integer "id" and a "file_name", got {image!r:.80}')
        names[image["id"]] = image["file_name"]
    captions: dict[int, list[str]] = defaultdict(list)
    for j, ann in enumerate(raw["annotations"]):
        if not isinstance(ann, dict) or ann.get("image_id") not in names:
            raise _fail(
                file,
                f"annotations[{j}].image_id",
                f'{ann.get("image_id") if isinstance(ann, dict) else ann!r} names no entry of "images"',
            )
        captions[ann["image_id"]].append(clean_caption(file, f"annotations[{j}].caption", ann.get("caption")))
    bare = [i for i in names if not captions[i]]
    if bare:
        raise _fail(file, f"images with id {bare[:3]}", f"{len(bare)} images have an empty caption list (no annotation)")
    check_images_exist(NAME, file, [images_dir / names[i] for i in sorted(names)])
    return [(names[i], tuple(captions[i])) for i in sorted(names)], digest


def build(cache_dir: Any, seed: int, **options: Any) -> Dataset:
    """Parse both files and check every image now, so bad data fails before training."""
    options = {**DEFAULTS, **options}
    check_options(options)
    root = require_root(NAME, options, "annotations/ and the image folders")
    train_dir, val_dir = root / options["train_images"], root / options["val_images"]
    train_rows, train_sha = _read(root / options["train_annotations"], train_dir)
    val_rows, val_sha = _read(root / options["val_annotations"], val_dir)
    order = np.random.default_rng([seed, 404]).permutation(len(val_rows))
    cut = int(round(options["val_fraction"] * len(order)))
    if cut == 0 or cut == len(order):
        raise UserError(
            f"dataset {NAME!r}: {len(val_rows)} images in {options['val_annotations']} cannot be split into val "
            f"and test with val_fraction={options['val_fraction']}; use a file with more images."
        )
    parts = {
        "train": (train_dir, train_rows),
        "val": (val_dir, [val_rows[i] for i in sorted(order[:cut])]),
        "test": (val_dir, [val_rows[i] for i in sorted(order[cut:])]),
    }
    splits = {
        name: Split(
            name=name,
            ids=tuple(f for f, _ in rows),
            load_image=_ImageFiles(folder, tuple(f for f, _ in rows)),
            captions=tuple(c for _, c in rows),
        )
        for name, (folder, rows) in parts.items()
    }
    info = {
        "root": str(root),
        "annotation_sha256": {"train": train_sha, "val": val_sha},
        "val": f"{options['val_fraction']:.0%} of the val file's images by seed, the rest is test",
        "splits": {n: {"images": len(r), "captions": sum(len(c) for _, c in r)} for n, (_, r) in parts.items()},
    }
    return Dataset(name=NAME, splits=splits, info=info)


@hookimpl
def vlbench_register_datasets(register: Register) -> None:
    register(
        DatasetSpec(
            name=NAME,
            factory=build,
            check_options=check_options,
            description="COCO from captions_{train,val}2014.json (or 2017) under a local root; the val file's images "
            "split by seed into val and test; every caption of an image.",
            options=dict(DEFAULTS),
            provides=frozenset({"image", "captions"}),
        )
    )
