"""Image-caption pairs in per-split CSV files, RISCM-style (study 004's data), read offline.

Layout under ``root`` (file and column names are options; study 004 does not name them)::

    train.csv  val.csv  test.csv     one row per (image, caption) pair, e.g.
                                     image,caption
                                     rsicd/airport_1.jpg,many planes are parked near a terminal
    images/                          the images, at the paths the image column gives

``caption_column`` may also list several columns (RISCM's own ``captions.csv`` has
``caption_1`` .. ``caption_5`` per image row). Rows of one image are grouped: each image is
one sample whose references are all its captions, in file order.

Duplicates (the study removed them): a caption repeated for the same image, compared after
lower-casing and collapsing whitespace, is dropped when ``drop_duplicates`` is true (the
default) and counted either way; the same caption on several images is kept (it can be a
fair description of both) and reported. ``Dataset.info["duplicates"]`` holds both counts
per split with a few examples. An image listed in two splits is a UserError: it would leak
test images into training.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.types import Dataset, DatasetSpec, Register, Split

NAME = "caption_csv"
SPLITS = ("train", "val", "test")
DEFAULTS: dict[str, Any] = {
    "root": "",  # folder holding the CSV files and images_dir
    "train_csv": "train.csv",
    "val_csv": "val.csv",
    "test_csv": "test.csv",
    "images_dir": "images",  # image paths in the CSVs are relative to root/images_dir
    "image_column": "image",
    "caption_column": "caption",  # or a list of columns, one caption each
    "drop_duplicates": True,
}
EXAMPLES = 5  # duplicate examples kept in the report


def normalise(caption: str) -> str:
    """The form duplicates are compared in: lower case, single spaces, no outer spaces or final period."""
    return " ".join(caption.lower().split()).rstrip(" .")


def duplicate_report(
    image_ids: Sequence[str], captions: Sequence[Sequence[str]], drop: bool
) -> tuple[list[tuple[str, ...]], dict[str, Any]]:
    """(captions per image, duplicates dropped when ``drop``; the report). Shared by caption loaders."""
    kept: list[tuple[str, ...]] = []
    repeated: list[dict[str, Any]] = []
    repeated_count = 0
    owners: dict[str, set[str]] = {}
    for image_id, refs in zip(image_ids, captions, strict=True):
        seen: set[str] = set()
        out = []
        for caption in refs:
            key = normalise(caption)
            owners.setdefault(key, set()).add(image_id)
            if key in seen:
                repeated_count += 1
                if len(repeated) < EXAMPLES:
                    repeated.append({"image": image_id, "caption": caption})
                if drop:
                    continue
            seen.add(key)
            out.append(caption)
        kept.append(tuple(out))
    shared = sorted(((key, ids) for key, ids in owners.items() if len(ids) > 1), key=lambda kv: (-len(kv[1]), kv[0]))
    report = {
        "same_image_repeats": repeated_count,
        "same_image_repeats_dropped": repeated_count if drop else 0,
        "same_image_examples": repeated,
        "captions_on_several_images": len(shared),
        "images_sharing_a_caption": len(set().union(*(ids for _, ids in shared))) if shared else 0,
        "several_images_examples": [{"caption": key, "images": len(ids)} for key, ids in shared[:EXAMPLES]],
        "compared_as": "lower case, whitespace collapsed, final period dropped",
    }
    return kept, report


def _resolve(options: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise UserError(f"dataset {NAME!r}: unknown option(s) {unknown}; it accepts {sorted(DEFAULTS)}.")
    opts = {**DEFAULTS, **options}
    if not opts["root"]:
        raise UserError(
            f"dataset {NAME!r}: set the option root to the folder holding {opts['train_csv']}, "
            f"{opts['val_csv']}, {opts['test_csv']} and {opts['images_dir']}/."
        )
    columns = opts["caption_column"]
    columns = [columns] if isinstance(columns, str) else columns
    if not isinstance(columns, list) or not columns or not all(isinstance(c, str) and c for c in columns):
        raise UserError(
            f"dataset {NAME!r}: caption_column must be a column name or a list of them, got {opts['caption_column']!r}."
        )
    opts["caption_column"] = columns
    if not isinstance(opts["drop_duplicates"], bool):
        raise UserError(f"dataset {NAME!r}: drop_duplicates must be true or false, got {opts['drop_duplicates']!r}.")
    return opts


def _read(path: Path, opts: Mapping[str, Any], split: str) -> tuple[list[str], list[list[str]]]:
    """(image paths in first-seen order, their captions in file order) from one split's CSV."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"{path}: no such file. Set the dataset option root (and {split}_csv) to where the {split} CSV is."
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable CSV with a header row ({type(exc).__name__}: {str(exc).strip()}).") from None
    wanted = [opts["image_column"], *opts["caption_column"]]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise UserError(
            f"{path}: no column(s) {missing}; the file has {list(frame.columns)}. Set the dataset options "
            f"image_column and caption_column to the names it uses."
        )
    images: dict[str, list[str]] = {}
    for number, row in zip(range(2, len(frame) + 2), frame[wanted].itertuples(index=False), strict=True):
        image, *captions = (cell.strip() for cell in row)
        if not image:
            raise UserError(f"{path}, line {number}: empty {opts['image_column']!r} cell. Fix or remove that row.")
        texts = [c for c in captions if c]
        if not texts:
            raise UserError(
                f"{path}, line {number}: no caption in {opts['caption_column']} for {image!r}. Fix or remove that row."
            )
        images.setdefault(image, []).extend(texts)
    if not images:
        raise UserError(f"{path}: no rows under the header; the {split} split would be empty.")
    return list(images), list(images.values())


class _ImageFiles:
    """``Split.load_image`` over image files; pickles as paths only."""

    def __init__(self, folder: Path, names: Sequence[str]) -> None:
        self.folder = folder
        self.names = list(names)

    def path(self, index: int) -> Path:
        """Lets the preflight check every file before training (docs/hooks.md)."""
        return self.folder / self.names[index]

    def __call__(self, index: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.path(index)) as image:
            return np.asarray(image.convert("RGB"))


def factory(cache_dir: Path, seed: int, **options: Any) -> Dataset:
    """Read the three CSVs under ``root``; the splits are the files' (``seed`` is unused)."""
    opts = _resolve(options)
    root = Path(opts["root"]).expanduser()
    images_dir = root / opts["images_dir"]
    splits: dict[str, Split] = {}
    info: dict[str, Any] = {"root": str(root), "files": {}, "duplicates": {}, "images": {}, "captions": {}}
    owner: dict[str, str] = {}
    for split in SPLITS:
        path = root / opts[f"{split}_csv"]
        names, captions = _read(path, opts, split)
        for name in names:
            if name in owner:
                raise UserError(
                    f"{path}: image {name!r} is also in the {owner[name]} split; an image must belong to one split "
                    f"(else test images leak into training). Remove it from one of the CSVs."
                )
            owner[name] = split
        absent = [n for n in names if not (images_dir / n).is_file()]
        if absent:
            raise UserError(
                f"{path}: {len(absent)} images are not under {images_dir}, e.g. {absent[:3]}. Check the option images_dir."
            )
        kept, report = duplicate_report(names, captions, opts["drop_duplicates"])
        splits[split] = Split(name=split, ids=tuple(names), load_image=_ImageFiles(images_dir, names), captions=tuple(kept))
        info["files"][split] = {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
        info["duplicates"][split] = report
        info["images"][split] = len(names)
        info["captions"][split] = sum(len(k) for k in kept)
    return Dataset(name=NAME, splits=splits, info=info)


@hookimpl
def vlbench_register_datasets(register: Register) -> None:
    register(
        DatasetSpec(
            name=NAME,
            factory=factory,
            description=(
                "Image-caption CSVs per split (RISCM-style; image and caption columns named by options) from a "
                "local root; repeated captions of an image dropped and reported."
            ),
            options=dict(DEFAULTS),
            provides=frozenset({"image", "captions"}),
        )
    )
