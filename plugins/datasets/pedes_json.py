"""Text-based person search datasets in the IRRA JSON formats: CUHK-PEDES, ICFG-PEDES, RSTPReid.

Each annotation file is a JSON list of records ``{"split", "captions", "file_path" | "img_path",
"id"}``; images live under ``<root>/<DATASET>/imgs/<file_path>``. Splits follow IRRA
(anosorae/IRRA ``datasets/``): ``split`` "train" and "test" name themselves, anything else is
val. Train pids are ``id - 1`` for CUHK-PEDES and ``id`` otherwise, contiguous from 0; eval
pids are the raw ``id``. In an eval split every image is a gallery item and every caption a
query, which is exactly what a :class:`~vlbench.types.Split` with per-image captions says.
Nothing is downloaded: ``root`` must point at a local copy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.types import Dataset, DatasetSpec, Register, Split

DEFAULTS: dict[str, Any] = {
    "root": "",  # the folder that contains CUHK-PEDES/, ICFG-PEDES/, RSTPReid/
    "val_fraction": 0.1,  # share of train identities held out as val, only when the file has no val
}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Layout:
    name: str  # the registered dataset name
    folder: str  # under root
    annotation_files: tuple[str, ...]  # accepted names, in order of preference
    path_key: str  # the image path key IRRA reads; the other one is accepted too
    train_pid_offset: int  # added to ``id`` for train pids (IRRA: -1 for CUHK-PEDES only)
    description: str


LAYOUTS = (
    Layout(
        "cuhk_pedes",
        "CUHK-PEDES",
        ("reid_raw.json",),
        "file_path",
        -1,
        "CUHK-PEDES (13,003 ids, 40,206 images, 2 captions each) from a local reid_raw.json; IRRA splits.",
    ),
    Layout(
        # IRRA's code opens ICFG-PEDES.json while its README says ICFG_PEDES.json.
        "icfg_pedes",
        "ICFG-PEDES",
        ("ICFG-PEDES.json", "ICFG_PEDES.json"),
        "file_path",
        0,
        "ICFG-PEDES (4,102 ids) from a local ICFG-PEDES.json; val carved from train identities by seed.",
    ),
    Layout(
        "rstpreid",
        "RSTPReid",
        ("data_captions.json",),
        "img_path",
        0,
        "RSTPReid (4,101 ids, 5 images and 2 captions each) from a local data_captions.json; IRRA splits.",
    ),
)


@dataclass(frozen=True)
class _Record:
    index: int  # position in the annotation file, for error messages and duplicate ids
    split: str
    captions: tuple[str, ...]
    path: str
    id: int


class _ImageFiles:
    """``Split.load_image`` for files under an ``imgs`` folder; picklable for DataLoader workers."""

    def __init__(self, images_dir: Path, paths: tuple[str, ...]) -> None:
        self.images_dir = images_dir
        self.paths = paths

    def path(self, index: int) -> Path:
        """The file behind ``index`` (preflight checks every file without decoding it in full)."""
        return self.images_dir / self.paths[index]

    def __call__(self, index: int) -> np.ndarray:
        path = self.path(index)
        try:
            with Image.open(path) as image:
                return np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (OSError, UnidentifiedImageError) as e:
            raise UserError(
                f"cannot read image {path}: {e}. Restore the file from the original dataset "
                f"archive or remove its record from the annotation file."
            ) from e


def _fail(file: Path, index: int, key: str, problem: str) -> UserError:
    return UserError(
        f"{file}: record {index}, key {key!r}: {problem}. Each record must be "
        f'{{"split": str, "captions": [str, ...], "file_path" or "img_path": str, "id": int}}; '
        f"fix the record or point root at an unmodified copy of the annotations."
    )


def _parse(file: Path, raw: Any, layout: Layout) -> list[_Record]:
    if not isinstance(raw, list):
        raise UserError(
            f"{file}: expected a JSON list of records, got a {type(raw).__name__}. Point root at "
            f"the folder that holds the original {layout.folder}/ annotations."
        )
    other = "img_path" if layout.path_key == "file_path" else "file_path"
    records = []
    for i, r in enumerate(raw):
        if not isinstance(r, Mapping):
            raise _fail(file, i, "<record>", f"expected an object, got {type(r).__name__}")
        for key in ("split", "captions", "id"):
            if key not in r:
                raise _fail(file, i, key, "missing")
        path_key = layout.path_key if layout.path_key in r else other
        if path_key not in r:
            raise _fail(file, i, layout.path_key, f"missing (nor is there {other!r})")
        split, captions, path, pid = r["split"], r["captions"], r[path_key], r["id"]
        if not isinstance(split, str):
            raise _fail(file, i, "split", f"expected a string, got {split!r}")
        if not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
            raise _fail(file, i, "captions", f"expected a list of strings, got {captions!r:.80}")
        if not isinstance(path, str) or not path:
            raise _fail(file, i, path_key, f"expected a non-empty relative path, got {path!r}")
        if isinstance(pid, bool) or not isinstance(pid, int):
            raise _fail(file, i, "id", f"expected an integer, got {pid!r}")
        name = split if split in ("train", "test") else "val"  # IRRA: anything else is val
        records.append(_Record(i, name, tuple(captions), path, pid))
    return records


def _contiguous(pids: list[int]) -> tuple[list[int], bool]:
    """IRRA asserts train pids are 0..N-1; a subset or a carved-out val breaks that, so
    they are renumbered in sorted order (and the record says so)."""
    ordered = sorted(set(pids))
    if ordered == list(range(len(ordered))):
        return pids, False
    rank = {p: k for k, p in enumerate(ordered)}
    return [rank[p] for p in pids], True


def _check_options(layout: Layout, options: dict[str, Any]) -> tuple[str, float]:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise UserError(
            f"dataset {layout.name!r}: unknown option(s) {unknown}; it accepts {sorted(DEFAULTS)}. "
            f"Remove or rename them in the dataset options of the suite."
        )
    merged = {**DEFAULTS, **options}
    root, fraction = merged["root"], merged["val_fraction"]
    if not isinstance(root, str):
        raise UserError(f"dataset {layout.name!r}: option 'root' must be a path string, got {root!r}.")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise UserError(
            f"dataset {layout.name!r}: option 'val_fraction' must be a number between 0 and 1 (exclusive), got {fraction!r}."
        )
    if not root:
        raise UserError(
            f"dataset {layout.name!r}: option 'root' is not set. Set root to the folder that "
            f"contains {layout.folder}/ (with {layout.folder}/{layout.annotation_files[0]} and "
            f"{layout.folder}/imgs/) in the dataset options of the suite; vlbench never downloads it."
        )
    return root, float(fraction)


def load(layout: Layout, cache_dir: Path, seed: int, **options: Any) -> Dataset:
    """Read ``layout``'s annotation file under the ``root`` option (``cache_dir`` is unused:
    the JSON is parsed in well under a second and images are read on demand)."""
    root_option, val_fraction = _check_options(layout, options)
    root = Path(root_option).expanduser()
    if not root.is_dir():
        raise UserError(
            f"dataset {layout.name!r}: root {str(root)!r} is not a directory. Set root to the "
            f"folder that contains {layout.folder}/."
        )
    candidates = [root / layout.folder / name for name in layout.annotation_files]
    file = next((p for p in candidates if p.is_file()), None)
    if file is None:
        expected = " or ".join(str(p) for p in candidates)
        raise UserError(
            f"dataset {layout.name!r}: annotation file not found; expected {expected}. Set root "
            f"to the folder that contains {layout.folder}/."
        )
    data = file.read_bytes()
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as e:
        raise UserError(f"{file}: not valid JSON ({e}). Restore the file from the dataset archive.") from e
    records = _parse(file, raw, layout)

    images_dir = root / layout.folder / "imgs"
    if not images_dir.is_dir():
        raise UserError(
            f"dataset {layout.name!r}: image folder {images_dir} not found. The annotation "
            f"paths are relative to {layout.folder}/imgs/; unpack the images there."
        )
    missing = [r for r in records if not (images_dir / r.path).is_file()]
    if missing:
        first = ", ".join(f"{images_dir / r.path} (record {r.index})" for r in missing[:3])
        raise UserError(
            f"dataset {layout.name!r}: {len(missing)} of {len(records)} images listed in {file} "
            f"are missing, e.g. {first}. Unpack the complete image archive under {images_dir}."
        )

    by_split: dict[str, list[_Record]] = {s: [r for r in records if r.split == s] for s in SPLITS}
    for name in ("train", "test"):
        if not by_split[name]:
            raise UserError(
                f"{file}: no record has split {name!r}; vlbench needs train and test records. "
                f"Point root at the complete annotation file."
            )
    info_val: dict[str, Any] = {"source": "file"}
    if not by_split["val"]:
        # ICFG-PEDES ships train and test only: hold out whole identities, so val is unseen.
        train_ids = sorted({r.id for r in by_split["train"]})
        n_val = max(1, round(val_fraction * len(train_ids)))
        if n_val >= len(train_ids):
            raise UserError(
                f"{file}: has no val records and only {len(train_ids)} train identities, too few "
                f"to hold out val_fraction={val_fraction}. Lower val_fraction or add identities."
            )
        rng = np.random.default_rng(seed)
        val_ids = {train_ids[k] for k in rng.choice(len(train_ids), size=n_val, replace=False).tolist()}
        by_split["val"] = [r for r in by_split["train"] if r.id in val_ids]
        by_split["train"] = [r for r in by_split["train"] if r.id not in val_ids]
        info_val = {"source": "carved from train identities", "fraction": val_fraction, "seed": seed, "n_ids": n_val}

    # Sample ids are file paths; a path listed twice (as some public files do) keeps IRRA's
    # gallery size, made unique by the record index.
    seen_paths: set[str] = set()
    duplicates = 0
    splits: dict[str, Split] = {}
    stats: dict[str, dict[str, int]] = {}
    remapped = False
    for name in SPLITS:
        rs = by_split[name]
        ids = []
        for r in rs:
            ids.append(r.path if r.path not in seen_paths else f"{r.path}#{r.index}")
            duplicates += r.path in seen_paths
            seen_paths.add(r.path)
        if name == "train":
            pids, remapped = _contiguous([r.id + layout.train_pid_offset for r in rs])
        else:
            pids = [r.id for r in rs]
        splits[name] = Split(
            name=name,
            ids=tuple(ids),
            load_image=_ImageFiles(images_dir, tuple(r.path for r in rs)),
            captions=tuple(r.captions for r in rs),
            identities=tuple(pids),
        )
        stats[name] = {
            "n_ids": len(set(pids)),
            "n_images": len(rs),
            "n_captions": sum(len(r.captions) for r in rs),
        }
    info = {
        "root": str(root),
        "annotation_file": str(file),
        "annotation_sha256": hashlib.sha256(data).hexdigest(),
        "splits": stats,
        "val": info_val,
        "train_pids": (f"id{layout.train_pid_offset:+d}" if layout.train_pid_offset else "id")
        + (", renumbered to 0..N-1 in sorted order" if remapped else ""),
        "eval_pids": "id",
        "duplicate_paths": duplicates,
    }
    return Dataset(name=layout.name, splits=splits, info=info)


def content_files(layout: Layout, **options: Any) -> list[Path]:
    """The annotation file and every image under ``<root>/<folder>/imgs``: the run's content fingerprint."""
    root = Path(_check_options(layout, {**DEFAULTS, **options})[0]).expanduser() / layout.folder
    annotations = [root / name for name in layout.annotation_files if (root / name).is_file()]
    return annotations + [p for p in (root / "imgs").rglob("*") if p.is_file()]


@hookimpl
def vlbench_register_datasets(register: Register) -> None:
    for layout in LAYOUTS:
        register(
            DatasetSpec(
                name=layout.name,
                factory=partial(load, layout),
                description=layout.description,
                options=dict(DEFAULTS),
                provides=frozenset({"image", "captions", "identity"}),
                content_files=partial(content_files, layout),
                # Real person descriptions name sides ("a bag in her left hand"); IRRA flips anyway,
                # vlbench does not train on image/caption pairs a flip has made wrong.
                hflip_safe=False,
            )
        )
