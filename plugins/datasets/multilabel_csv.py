"""The multi-label competition CSV (USYD COMP5329 format, study 000's data), read offline.

Layout under ``root``::

    train.csv    ImageID,Labels,Caption   e.g.  0.jpg,1 19,A man riding a horse, with a "hat
    data/        the images, named by ImageID

``Labels`` are space-separated ids from 1 to 19 without 12, mapped explicitly to class
indices (``LABEL_MAP``: 1..11 -> 0..10, 13..19 -> 11..17); an id outside the map is a
UserError naming the file, the line and the value.

The file is not valid CSV: captions contain commas and stray double quotes without quoting.
The idiom in public solutions escapes quotes with a regex and reads with
``pandas.read_csv(escapechar="/")``, which then breaks on captions that contain ``/``. Here
every physical line is one record, split on its first two commas only (``Caption`` must be
the last column, so it may hold any comma); a caption that is a properly quoted CSV field is
unquoted (``""`` -> ``"``), and any other double quote is stray and dropped.

The competition's test labels are hidden, so val **and** test are held-out parts of
``train.csv``: a multi-label stratified split (iterative stratification, Sechidis et al.
2011) with a fixed seed. Rare-label oversampling (the study's "replicate up to 800
positives") is applied to the train split only, after the split, as extra copies whose ids
are ``<ImageID>#copy<k>``; the pre/post label counts go into ``Dataset.info``.

:func:`write_submission` writes predictions in the competition's submission format
(``ImageID,Labels``, empty cell = no label) and :func:`read_submission` reads one back.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.types import Dataset, DatasetSpec, Register, Split

NAME = "multilabel_csv"
LABEL_IDS = (*range(1, 12), *range(13, 20))  # the competition has no label 12
LABEL_MAP = {label: index for index, label in enumerate(LABEL_IDS)}
CLASS_NAMES = tuple(str(label) for label in LABEL_IDS)
SPLITS = ("train", "val", "test")
DEFAULTS: dict[str, Any] = {
    "root": "",  # folder holding train_csv and images_dir
    "train_csv": "train.csv",
    "images_dir": "data",
    "split_fractions": [0.7, 0.15, 0.15],  # train, val, test parts of train_csv
    "oversample_min": 800,  # train labels with fewer positives are replicated up to this; 0 = off
}


@dataclass(frozen=True)
class Row:
    line: int  # 1-based line in the file
    image_id: str
    labels: tuple[int, ...]  # class indices 0..17
    caption: str


# ---------------------------------------------------------------- parsing


def _quoted(field: str) -> str | None:
    """The content of a properly quoted CSV field (``""`` -> ``"``), or None if it is not one."""
    if len(field) >= 2 and field[0] == field[-1] == '"' and '"' not in field[1:-1].replace('""', ""):
        return field[1:-1].replace('""', '"')
    return None


def _unquote(field: str) -> str:
    field = field.strip()
    content = _quoted(field)
    return field if content is None else content


def clean_caption(raw: str) -> str:
    """A caption cell as written: unquoted when it is a proper CSV field, stray quotes dropped."""
    field = raw.strip()
    content = _quoted(field)
    text = field.replace('"', "") if content is None else content
    return " ".join(text.split())


def parse_labels(cell: str, path: Path, line: int) -> tuple[int, ...]:
    """Competition ids in ``cell`` -> sorted class indices; UserError naming file, line and value."""
    out = set()
    for value in _unquote(cell).split():
        try:
            label = int(value)
        except ValueError:
            label = None
        if label not in LABEL_MAP:
            raise UserError(
                f"{path}, line {line}: label {value!r} is not a competition label id "
                f"(1-19 without 12). Fix that row or remove it."
            )
        out.add(LABEL_MAP[label])
    return tuple(sorted(out))


def _columns(header: str, path: Path, required: Sequence[str]) -> dict[str, int]:
    names = [_unquote(c) for c in header.lstrip("\ufeff").strip().split(",")]
    missing = [c for c in required if c not in names]
    if missing or len(names) != len(required):
        raise UserError(f"{path}: the header must have exactly the columns {list(required)}, got {names}.")
    return {name: i for i, name in enumerate(names)}


def _lines(path: Path) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file. Set the dataset option root (and train_csv) to the competition folder.") from None
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text ({exc}).") from None
    return [(i + 1, line) for i, line in enumerate(text.splitlines()) if line.strip()]


def read_labelled_csv(path: Path) -> list[Row]:
    """Every row of a ``ImageID,Labels,Caption`` file, validated."""
    lines = _lines(path)
    if not lines:
        raise UserError(f"{path}: the file is empty.")
    columns = _columns(lines[0][1], path, ("ImageID", "Labels", "Caption"))
    if columns["Caption"] != 2:
        raise UserError(f"{path}: Caption must be the last column (captions contain commas), got header {lines[0][1]!r}.")
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for number, line in lines[1:]:
        fields = line.split(",", 2)
        if len(fields) != 3:
            raise UserError(f"{path}, line {number}: expected ImageID,Labels,Caption, got {line!r}.")
        image_id = _unquote(fields[columns["ImageID"]])
        if not image_id:
            raise UserError(f"{path}, line {number}: empty ImageID.")
        if image_id in seen:
            raise UserError(f"{path}, line {number}: ImageID {image_id!r} repeats line {seen[image_id]}.")
        seen[image_id] = number
        rows.append(Row(number, image_id, parse_labels(fields[columns["Labels"]], path, number), clean_caption(fields[2])))
    return rows


# ---------------------------------------------------------------- submissions


def write_submission(path: str | Path, image_ids: Sequence[str], labels: Sequence[Sequence[int]]) -> None:
    """``ImageID,Labels`` with space-separated competition ids for class indices ``labels``
    (an empty cell where a sample has none)."""
    if len(image_ids) != len(labels):
        raise ValueError(f"{len(image_ids)} image ids but {len(labels)} label sets")
    lines = ["ImageID,Labels"]
    for image_id, row in zip(image_ids, labels, strict=True):
        bad = [c for c in row if not 0 <= c < len(LABEL_IDS)]
        if bad:
            raise ValueError(f"{image_id}: class indices {bad} outside 0..{len(LABEL_IDS) - 1}")
        lines.append(f"{image_id},{' '.join(str(LABEL_IDS[c]) for c in sorted(set(row)))}")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_submission(path: str | Path) -> dict[str, tuple[int, ...]]:
    """ImageID -> class indices from a submission file; empty ``Labels`` cells allowed."""
    path = Path(path)
    lines = _lines(path)
    if not lines:
        raise UserError(f"{path}: the file is empty.")
    columns = _columns(lines[0][1], path, ("ImageID", "Labels"))
    out: dict[str, tuple[int, ...]] = {}
    for number, line in lines[1:]:
        fields = next(csv.reader([line]))
        if len(fields) == 1 and columns["Labels"] == 1:  # "0.jpg" with no separator at all
            fields.append("")
        if len(fields) != 2:
            raise UserError(f"{path}, line {number}: expected ImageID,Labels, got {line!r}.")
        image_id = fields[columns["ImageID"]].strip()
        if image_id in out:
            raise UserError(f"{path}, line {number}: ImageID {image_id!r} appears twice.")
        out[image_id] = parse_labels(fields[columns["Labels"]], path, number)
    return out


# ---------------------------------------------------------------- split and oversampling


def iterative_stratification(y: np.ndarray, fractions: Sequence[float], seed: int) -> np.ndarray:
    """Fold index per sample for multi-label ``y`` [N, C] (Sechidis et al. 2011).

    Repeatedly takes the label with the fewest unassigned samples and gives each of its
    samples to the fold that still wants most of that label (then most samples overall;
    remaining ties at random), so rare labels are spread first and every fold gets its share
    of each. Samples without labels fill the folds that want most samples.
    """
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=bool)
    shares = np.asarray(fractions, dtype=np.float64)
    want = shares * len(y)
    want_label = np.outer(shares, y.sum(axis=0))
    fold = np.full(len(y), -1)
    left = np.ones(len(y), dtype=bool)

    def best(scores: np.ndarray) -> int:
        # lexsort keys go last-key-first: most wanted label, then most wanted samples, then random.
        return int(np.lexsort((rng.random(len(want)), -want, -scores))[0])

    while True:
        counts = y[left].sum(axis=0)
        if not counts.any():
            break
        rarest = np.flatnonzero(counts == counts[counts > 0].min())
        label = int(rng.choice(rarest))
        for i in rng.permutation(np.flatnonzero(left & y[:, label])):
            f = best(want_label[:, label])
            fold[i], left[i] = f, False
            want_label[f] -= y[i]
            want[f] -= 1
    for i in rng.permutation(np.flatnonzero(left)):
        f = best(np.zeros(len(want)))
        fold[i] = f
        want[f] -= 1
    return fold


def oversample(labels: Sequence[tuple[int, ...]], num_classes: int, minimum: int, seed: int) -> list[int]:
    """Indices of the extra copies that lift every label to ``minimum`` positives where it can.

    Labels are raised from the rarest up; a copy also counts for its other labels, so a
    later label may need fewer copies. A label without any positive cannot be raised.
    """
    rng = np.random.default_rng(seed)
    y = np.zeros((len(labels), num_classes), dtype=np.int64)
    for i, row in enumerate(labels):
        y[i, list(row)] = 1
    counts = y.sum(axis=0)
    extra: list[int] = []
    for label in np.argsort(counts, kind="stable"):
        need = minimum - counts[label]
        holders = np.flatnonzero(y[:, label])
        if need <= 0 or not len(holders):
            continue
        copies = rng.choice(holders, size=need, replace=True)
        counts += y[copies].sum(axis=0)
        extra.extend(int(i) for i in copies)
    return extra


# ---------------------------------------------------------------- the dataset


class _ImageFiles:
    """``Split.load_image`` over image files; pickles as paths only."""

    def __init__(self, folder: Path, names: Sequence[str]) -> None:
        self.folder = folder
        self.names = list(names)

    def path(self, index: int) -> Path:
        """The file behind ``index`` (preflight checks every file without decoding it in full)."""
        return self.folder / self.names[index]

    def __call__(self, index: int) -> np.ndarray:
        from PIL import Image

        with Image.open(self.path(index)) as image:
            return np.asarray(image.convert("RGB"))


def _resolve(options: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise UserError(f"dataset {NAME!r}: unknown option(s) {unknown}; it accepts {sorted(DEFAULTS)}.")
    opts = {**DEFAULTS, **options}
    if not opts["root"]:
        raise UserError(
            f"dataset {NAME!r}: set the option root to the competition folder (holding {opts['train_csv']} and {opts['images_dir']}/)."
        )
    fractions = opts["split_fractions"]
    if (
        not isinstance(fractions, (list, tuple))
        or len(fractions) != 3
        or not all(isinstance(f, (int, float)) and not isinstance(f, bool) and f > 0 for f in fractions)
        or abs(sum(fractions) - 1) > 1e-6
    ):
        raise UserError(
            f"dataset {NAME!r}: split_fractions must be three positive numbers (train, val, test) summing to 1, got {fractions!r}."
        )
    if isinstance(opts["oversample_min"], bool) or not isinstance(opts["oversample_min"], int) or opts["oversample_min"] < 0:
        raise UserError(f"dataset {NAME!r}: oversample_min must be an integer >= 0 (0 = off), got {opts['oversample_min']!r}.")
    return opts


def _counts(labels: Sequence[tuple[int, ...]]) -> dict[str, int]:
    counts = np.zeros(len(LABEL_IDS), dtype=np.int64)
    for row in labels:
        counts[list(row)] += 1
    return {name: int(n) for name, n in zip(CLASS_NAMES, counts, strict=True)}


def content_files(**options: Any) -> list[Path]:
    """The CSV and every file under ``images_dir``: the run's content fingerprint."""
    opts = _resolve(options)
    root = Path(opts["root"]).expanduser()
    return [root / opts["train_csv"], *(p for p in (root / opts["images_dir"]).rglob("*") if p.is_file())]


def factory(cache_dir: Path, seed: int, **options: Any) -> Dataset:
    """Read ``root/train_csv``, split it (seed ``seed``) and oversample the train part."""
    opts = _resolve(options)
    root = Path(opts["root"]).expanduser()
    csv_path, images = root / opts["train_csv"], root / opts["images_dir"]
    rows = read_labelled_csv(csv_path)
    missing = [r.image_id for r in rows if not (images / r.image_id).is_file()]
    if missing:
        raise UserError(
            f"{csv_path}: {len(missing)} images are not in {images}, e.g. {missing[:3]}. Check the option images_dir."
        )

    y = np.zeros((len(rows), len(LABEL_IDS)), dtype=bool)
    for i, row in enumerate(rows):
        y[i, list(row.labels)] = True
    fold = iterative_stratification(y, opts["split_fractions"], seed)
    parts = {name: [rows[i] for i in np.flatnonzero(fold == f)] for f, name in enumerate(SPLITS)}

    train = parts["train"]
    before = _counts([r.labels for r in train])
    copies = oversample([r.labels for r in train], len(LABEL_IDS), opts["oversample_min"], seed) if opts["oversample_min"] else []
    copy_number: dict[str, int] = {}
    entries: dict[str, list[tuple[str, Row]]] = {name: [(r.image_id, r) for r in parts[name]] for name in SPLITS}
    for i in copies:
        row = train[i]
        copy_number[row.image_id] = copy_number.get(row.image_id, 0) + 1
        entries["train"].append((f"{row.image_id}#copy{copy_number[row.image_id]}", row))
    held_out = {r.image_id for name in ("val", "test") for r in parts[name]}
    overlap = held_out & {r.image_id for _, r in entries["train"]}
    if overlap:  # a bug, never the user's data: the split must keep every image in one part
        raise RuntimeError(f"ImageIDs in both train and val/test: {sorted(overlap)[:5]}")

    splits = {
        name: Split(
            name=name,
            ids=tuple(sample_id for sample_id, _ in entries[name]),
            load_image=_ImageFiles(images, [r.image_id for _, r in entries[name]]),
            captions=tuple((r.caption,) for _, r in entries[name]),
            labels=tuple(r.labels for _, r in entries[name]),
        )
        for name in SPLITS
    }
    info = {
        "root": str(root),
        "train_csv": str(csv_path),
        "sha256": hashlib.sha256(csv_path.read_bytes()).hexdigest(),
        "rows": len(rows),
        "label_map": {str(label): index for label, index in LABEL_MAP.items()},
        "split": {
            "method": "iterative stratification (Sechidis et al. 2011) over the 18 labels",
            "seed": seed,
            "fractions": list(opts["split_fractions"]),
            "note": "val and test are held-out parts of train_csv: the competition's test labels are hidden",
            "label_counts": {name: _counts([r.labels for r in parts[name]]) for name in SPLITS},
        },
        "oversampling": {
            "split": "train only, after the split",
            "min_positives": opts["oversample_min"],
            "copies_added": len(copies),
            "label_counts_before": before,
            "label_counts_after": _counts(list(splits["train"].labels or ())),  # every split of this dataset is labelled
        },
        "rows_without_labels": int((~y.any(axis=1)).sum()),
        "train_eval_image_overlap": 0,
    }
    return Dataset(name=NAME, splits=splits, class_names=CLASS_NAMES, info=info)


@hookimpl
def vlbench_register_datasets(register: Register) -> None:
    register(
        DatasetSpec(
            name=NAME,
            factory=factory,
            description=(
                "Multi-label competition CSV (ImageID,Labels,Caption; labels 1-19 without 12) from a local root; "
                "stratified train/val/test from train.csv, rare labels oversampled in train only."
            ),
            options={k: list(v) if isinstance(v, list) else v for k, v in DEFAULTS.items()},
            provides=frozenset({"image", "captions", "labels"}),
            content_files=content_files,
        )
    )
