"""``karpathy_json``: Flickr8k / Flickr30k / COCO with Karpathy's splits (``caption_datasets.zip``).

The file (studies.md §3.3) is ``{"dataset": "coco"|"flickr30k"|"flickr8k", "images": [{"filename",
"split": "train"|"val"|"test"|"restval", "sentences": [{"raw", "tokens", ...}], "filepath"?
(COCO: "train2014"/"val2014"), "cocoid"?, ...}]}``. An image's path is
``<root>/<images>/<filepath>/<filename>``; ``images`` defaults to the folder the public archives
unpack to (``flickr30k-images``, ``Flicker8k_Dataset``; COCO: root itself). ``restval`` (COCO)
joins train unless ``restval = "drop"``. Captions are the ``raw`` sentences (or the tokens
joined when a file has no ``raw``). Task-agnostic: retrieval and captioning read the same
Split (images + all captions per image); nothing is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.types import Dataset, DatasetSpec, Register, Split

from ._caption_files import check_images_exist, clean_caption, read_json, require_root
from .pedes_json import _ImageFiles

NAME = "karpathy_json"
FILES = ("dataset_coco.json", "dataset_flickr30k.json", "dataset_flickr8k.json")
IMAGE_FOLDERS = {"flickr30k": "flickr30k-images", "flickr8k": "Flicker8k_Dataset", "coco": ""}
DEFAULTS: dict[str, Any] = {
    "root": "",  # folder holding the JSON (or karpathy/<json>) and the images
    "file": "",  # the JSON's name or path under root; "" = the one of FILES that exists
    "images": "",  # image folder under root; "" = the archive's own name for the dataset
    "restval": "train",  # "train" (merge, as usual) or "drop"
}
SPLITS = ("train", "val", "test")


def check_options(options: Mapping[str, Any]) -> None:
    if options["restval"] not in ("train", "drop"):
        raise UserError(f'dataset {NAME!r}: option restval={options["restval"]!r}; use "train" or "drop".')


def _find_file(root: Path, file: str) -> Path:
    if file:
        return root / file
    for folder in (root, root / "karpathy"):
        for name in FILES:
            if (folder / name).is_file():
                return folder / name
    raise UserError(
        f"dataset {NAME!r}: none of {list(FILES)} found in {root} or {root / 'karpathy'}. Unpack "
        "caption_datasets.zip there, or set the option file to the JSON's path under root."
    )


def _fail(file: Path, index: int, key: str, problem: str) -> UserError:
    return UserError(
        f'{file}: images[{index}], key {key!r}: {problem}. Each image entry needs "filename", "split" '
        '(train/val/test/restval) and a non-empty "sentences" list; restore the file from caption_datasets.zip.'
    )


def build(cache_dir: Any, seed: int, **options: Any) -> Dataset:
    """Parse and check the whole file and every image path now, so bad data fails before training."""
    options = {**DEFAULTS, **options}
    check_options(options)
    root = require_root(NAME, options, "dataset_<name>.json and the images")
    file = _find_file(root, options["file"])
    raw, digest = read_json(file)
    if not isinstance(raw, dict) or not isinstance(raw.get("images"), list):
        raise UserError(
            f'{file}: expected an object with an "images" list (Karpathy\'s format), got '
            f"{type(raw).__name__} with keys {sorted(raw)[:5] if isinstance(raw, dict) else '-'}."
        )
    kind = raw.get("dataset", "")
    folder = root / (options["images"] or IMAGE_FOLDERS.get(kind, ""))
    by_split: dict[str, list[tuple[str, tuple[str, ...]]]] = {s: [] for s in SPLITS}
    for i, entry in enumerate(raw["images"]):
        if not isinstance(entry, dict):
            raise _fail(file, i, "<entry>", f"expected an object, got {type(entry).__name__}")
        for key in ("filename", "split", "sentences"):
            if key not in entry:
                raise _fail(file, i, key, "missing")
        split = entry["split"]
        if split not in (*SPLITS, "restval"):
            raise _fail(file, i, "split", f"{split!r} is not train, val, test or restval")
        if not isinstance(entry["sentences"], list) or not entry["sentences"]:
            raise _fail(file, i, "sentences", f"expected a non-empty list of sentences, got {entry['sentences']!r:.60}")
        captions = []
        for j, sentence in enumerate(entry["sentences"]):
            text = sentence.get("raw") if isinstance(sentence, dict) else None
            if text is None and isinstance(sentence, dict) and isinstance(sentence.get("tokens"), list):
                text = " ".join(str(t) for t in sentence["tokens"])
            captions.append(clean_caption(file, f"images[{i}].sentences[{j}]", text))
        if split == "restval":
            if options["restval"] == "drop":
                continue
            split = "train"
        path = str(Path(entry.get("filepath", "")) / entry["filename"])
        by_split[split].append((path, tuple(captions)))
    for name in SPLITS:
        if not by_split[name]:
            raise UserError(f"{file}: no image has split {name!r}; vlbench needs train, val and test. Use the complete file.")
    check_images_exist(NAME, file, [folder / p for s in SPLITS for p, _ in by_split[s]])
    splits = {
        name: Split(
            name=name,
            ids=tuple(p for p, _ in rows),
            load_image=_ImageFiles(folder, tuple(p for p, _ in rows)),
            captions=tuple(c for _, c in rows),
        )
        for name, rows in by_split.items()
    }
    info = {
        "root": str(root),
        "annotation_file": str(file),
        "annotation_sha256": digest,
        "source_dataset": kind,
        "images_dir": str(folder),
        "restval": options["restval"],
        "splits": {n: {"images": len(r), "captions": sum(len(c) for _, c in r)} for n, r in by_split.items()},
    }
    return Dataset(name=NAME, splits=splits, info=info)


@hookimpl
def vlbench_register_datasets(register: Register) -> None:
    register(
        DatasetSpec(
            name=NAME,
            factory=build,
            check_options=check_options,
            description="Flickr8k/Flickr30k/COCO with Karpathy's splits (dataset_*.json) from a local root; "
            "every caption of an image, restval merged into train.",
            options=dict(DEFAULTS),
            provides=frozenset({"image", "captions"}),
        )
    )
