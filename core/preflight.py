"""Checks before the first run, so bad input costs seconds, never a training.

:func:`preflight` probes that the results, cache and runs folders take a file, estimates the
disk the suite needs, builds every dataset the suite uses once and validates it (splits,
columns, captions, labels, every image decodes), and builds the encoders that load weights
(the file is readable and fits). Any failure is a :class:`UserError` naming the file, key or
sample and the fix; nothing is written to the results folder. The datasets stay cached in
the process (:func:`dataset_for`) so the runs do not build them again.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from vlbench.data import usable_cpu_count
from vlbench.errors import UserError
from vlbench.types.datasets import Dataset, Split
from vlbench.types.runs import ComponentChoice, RunSpec

RECORD_BYTES = 256 * 1024  # a record is 15-60 KB; room for long curves and per-class tables
EVENTS_BYTES = 256 * 1024  # TensorBoard scalars of one run
HEADROOM_BYTES = 64 * 1024 * 1024  # claims, markers, temp files, a safety margin
SAMPLED_IMAGES = 2_000  # images decoded per split when the loader names no files
LONG_CAPTION_WORDS = 200  # longer captions are reported: every text encoder truncates them

_DATASETS: dict[str, Dataset] = {}  # built datasets of this process, by dataset_key()


@dataclass
class Report:
    datasets: list[str] = field(default_factory=list)  # one line per dataset: name and sizes
    notes: list[str] = field(default_factory=list)  # things worth knowing that are not errors
    disk: str = ""


def dataset_key(run: RunSpec, cache_dir: Path) -> str:
    assert run.choice("dataset") is not None
    return json.dumps(
        [run.require("dataset").name, run.require("dataset").options, run.data_seed, str(cache_dir)], sort_keys=True, default=str
    )


def dataset_for(run: RunSpec, factory: Callable[..., Dataset], cache_dir: Path) -> Dataset:
    """The run's dataset: built once per process and options, then reused."""
    key = dataset_key(run, cache_dir)
    if key not in _DATASETS:
        _DATASETS[key] = factory(cache_dir=cache_dir, seed=run.data_seed, **run.require("dataset").options)
    return _DATASETS[key]


def preflight(runs: Sequence[RunSpec], host: Any, results_dir: Path, cache_dir: Path, runs_dir: Path | None) -> Report:
    """Every check; raises UserError at the first failure. ``runs``: the runs still to do."""
    report = Report()
    if not runs:
        return report
    suite = runs[0].suite
    writable(Path(results_dir) / suite, "results folder", "--results-dir")
    writable(Path(cache_dir), "cache folder", "--cache-dir (or $VLBENCH_CACHE)")
    if runs_dir is not None:
        writable(Path(runs_dir), "runs folder (TensorBoard events)", "--runs-dir, or --runs-dir '' to turn it off")
    report.disk = disk_space(len(runs), Path(results_dir), Path(cache_dir), runs_dir)
    seen: set[str] = set()
    for run in runs:
        if run.choice("dataset") is None or dataset_key(run, cache_dir) in seen:
            continue
        seen.add(dataset_key(run, cache_dir))
        spec = host.get("dataset", run.require("dataset").name)
        try:
            dataset = dataset_for(run, spec.factory, cache_dir)
        except UserError:
            raise
        except Exception as exc:  # stop before any run, naming the component
            raise UserError(
                f"dataset {run.require('dataset').name!r} (plugin {spec.plugin!r}, {spec.distribution} {spec.version}) could not be "
                f"built: {type(exc).__name__}: {exc}. Check its options in the suite, or report it to the plugin's authors."
            ) from None
        task = host.get("task", run.require("task").name)
        report.datasets.append(validate(dataset, run.require("dataset").name, task.required_fields, report.notes))
    check_weights(runs, host, Path(cache_dir))
    return report


# ---------------------------------------------------------------- folders and disk


def writable(folder: Path, what: str, option: str) -> None:
    """A probe file in ``folder`` (or, when it does not exist yet, in its nearest existing
    parent, where it would be created); removed at once."""
    target = folder.expanduser()
    while not target.exists():
        if target.parent == target:
            break
        target = target.parent
    if not target.is_dir():
        raise UserError(f"{what} {folder}: {target} is not a folder. Pass another path with {option}, or move {target} away.")
    try:
        fd, probe = tempfile.mkstemp(dir=target, prefix=".vlbench-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(
            f"{what} {folder} is not writable ({exc.strerror or exc} in {target}). "
            f"Fix its permissions, free or remount the disk, or pass another path with {option}."
        ) from None


def disk_space(n_runs: int, results_dir: Path, cache_dir: Path, runs_dir: Path | None) -> str:
    need = n_runs * (RECORD_BYTES + (EVENTS_BYTES if runs_dir is not None else 0)) + HEADROOM_BYTES
    free = min(shutil.disk_usage(_existing(p)).free for p in (results_dir, cache_dir, *([runs_dir] if runs_dir else [])))
    line = (
        f"disk: about {need / 2**20:.0f} MiB needed ({n_runs} records of <= {RECORD_BYTES // 1024} KiB"
        f"{', TensorBoard events' if runs_dir is not None else ''}, {HEADROOM_BYTES // 2**20} MiB headroom), "
        f"{free / 2**30:.1f} GiB free"
    )
    if free < need:
        raise UserError(
            f"not enough free disk for the suite: {line}. Free some space, or pass folders on another disk "
            "with --results-dir / --cache-dir / --runs-dir."
        )
    return line


def _existing(path: Path) -> Path:
    path = Path(path).expanduser()
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


# ---------------------------------------------------------------- datasets


def validate(dataset: Any, name: str, required: frozenset[str], notes: list[str]) -> str:
    """Raise UserError naming the split, sample and problem; return a one-line summary."""
    if not isinstance(dataset, Dataset):
        raise UserError(f"dataset {name!r}: its factory returned {type(dataset).__name__}, not a vlbench Dataset.")
    missing = [s for s in ("train", "val", "test") if s not in dataset.splits]
    if missing:
        raise UserError(f"dataset {name!r} has no {'/'.join(missing)} split: a dataset needs train, val and test.")
    images = captions = 0
    for split_name in ("train", "val", "test"):
        split = dataset.splits[split_name]
        where = f"dataset {name!r}, split {split_name!r}"
        if len(split) == 0:
            raise UserError(f"{where} is empty. Check the dataset's options (sizes, fractions, root).")
        _columns(split, where, required)
        if split.captions is not None:
            captions += _captions(split, where, notes)
        if split.labels is not None:
            _labels(split, where, len(dataset.class_names), split_name == "train" and "labels" in required)
        images += _images(split, where)
    return f"{name}: {images} images checked, {captions} captions, splits " + ", ".join(
        f"{s} {len(dataset.splits[s])}" for s in ("train", "val", "test")
    )


def _columns(split: Split, where: str, required: frozenset[str]) -> None:
    columns = {"captions": split.captions, "identity": split.identities, "labels": split.labels}
    for field_name, column in columns.items():
        if column is None:
            if field_name in required:
                raise UserError(f"{where} has no {field_name}, which the task needs. Pick a dataset that provides {field_name}.")
        elif len(column) != len(split):
            raise UserError(
                f"{where}: {len(column)} {field_name} for {len(split)} images; every column needs one entry per image."
            )


def _captions(split: Split, where: str, notes: list[str]) -> int:
    count, longest = 0, (0, "")
    for i, caps in enumerate(split.captions or ()):  # called for splits that have captions
        if not isinstance(caps, (tuple, list)) or not caps:
            raise UserError(
                f"{where}, sample {split.ids[i]!r}: no captions (got {caps!r:.40}). "
                "Every image needs at least one caption: fix the annotation or drop the image."
            )
        for k, caption in enumerate(caps):
            if not isinstance(caption, str) or not caption.strip():
                raise UserError(
                    f"{where}, sample {split.ids[i]!r}: caption {k} is empty. Fix the annotation or drop that caption."
                )
            words = len(caption.split())
            if words > longest[0]:
                longest = (words, split.ids[i])
        count += len(caps)
    if longest[0] > LONG_CAPTION_WORDS:
        notes.append(
            f"{where}: captions up to {longest[0]} words (sample {longest[1]!r}); text encoders truncate them "
            "to their token limit and each record counts the captions at that limit."
        )
    return count


def _labels(split: Split, where: str, num_classes: int, need_positives: bool) -> None:
    positives = 0
    for i, row in enumerate(split.labels or ()):  # called for splits that have labels
        bad = [
            c
            for c in row
            if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < (num_classes or math.inf)
        ]
        if bad:
            raise UserError(
                f"{where}, sample {split.ids[i]!r}: labels {bad} outside 0..{num_classes - 1} "
                f"(the dataset names {num_classes} classes). Fix the label column."
            )
        positives += len(row)
    if need_positives and positives == 0:
        raise UserError(
            f"{where}: no sample has a label (the label column is empty everywhere), so nothing can be learned. "
            "Check the label column of the annotation file."
        )


def _images(split: Split, where: str) -> int:
    """Every image when the loader names its files (header and a reduced decode); otherwise a
    sample of at most SAMPLED_IMAGES through the loader itself."""
    locate = getattr(split.load_image, "path", None)
    if callable(locate):
        paths = [Path(locate(i)) for i in range(len(split))]
        with ThreadPoolExecutor(max(1, min(8, usable_cpu_count()))) as pool:
            for i, problem in enumerate(pool.map(_image_problem, paths)):
                if problem:
                    raise UserError(
                        f"{where}, sample {split.ids[i]!r}: image {paths[i]} {problem}. "
                        "Restore it from the dataset archive or remove its entry from the annotations."
                    )
        return len(paths)
    indices = np.unique(np.linspace(0, len(split) - 1, min(len(split), SAMPLED_IMAGES)).astype(int))
    for i in indices.tolist():
        try:
            image = split.load_image(i)
        except UserError:
            raise
        except Exception as exc:  # the loader's own failure, named
            raise UserError(
                f"{where}, sample {split.ids[i]!r}: the image could not be loaded ({type(exc).__name__}: {exc})."
            ) from None
        shape = getattr(image, "shape", None)
        if getattr(image, "dtype", None) != np.uint8 or shape is None or len(shape) != 3 or shape[2] != 3:
            raise UserError(
                f"{where}, sample {split.ids[i]!r}: load_image returned {getattr(image, 'dtype', type(image).__name__)} "
                f"{shape}; it must return an HxWx3 uint8 RGB array."
            )
    return len(indices)


def _image_problem(path: Path) -> str | None:
    from PIL import Image, UnidentifiedImageError

    if not path.is_file():
        return "does not exist"
    try:
        with Image.open(path) as image:
            image.draft("RGB", (64, 64))  # JPEG: a reduced-size decode; still reads every byte
            image.load()
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as exc:
        return f"does not decode ({exc})"
    return None


# ---------------------------------------------------------------- weights


def check_weights(runs: Sequence[RunSpec], host: Any, cache_dir: Path) -> None:
    """Build each distinct encoder that loads weights (a file, or pretrained): the file must
    be readable and fit, the cached download must be there. The model is dropped at once. A
    kind with its own ``preflight`` (a language model: extra installed, weights converted)
    runs that for every entry instead."""
    seen: set[str] = set()
    for run in runs:
        for kind, choice in run.components.items():  # every kind whose entries load weights (the encoders)
            check = getattr(host.kinds.get(kind), "preflight", None)
            if choice is None or (check is None and not (choice.options.get("weights") or choice.options.get("pretrained"))):
                continue
            key = json.dumps([kind, choice.name, choice.options], sort_keys=True, default=str)
            if key in seen:
                continue
            seen.add(key)
            if check is not None:
                check(host.get(kind, choice.name), choice, cache_dir)
            else:
                _build_encoder(kind, choice, host)


def _build_encoder(kind: str, choice: ComponentChoice, host: Any) -> None:
    common = {k: choice.options.get(k) for k in ("pretrained", "weights")}
    own = {k: v for k, v in choice.options.items() if k not in ("pretrained", "weights", "freeze", "image_size")}
    extra = {"image_size": tuple(choice.options["image_size"])} if "image_size" in choice.options else {}
    spec = host.get(kind, choice.name)
    try:
        spec.factory(**extra, pretrained=common["pretrained"], weights=common["weights"] or None, **own)
    except UserError:
        raise
    except Exception as exc:  # stop before any run, naming the component
        source = f"weights file {choice.options['weights']}" if choice.options.get("weights") else "its pretrained weights"
        raise UserError(
            f"{kind} encoder {choice.name!r} could not be built with {source}: {type(exc).__name__}: {exc}. "
            "Check the weights option in the suite (a state dict saved from the same architecture)."
        ) from None


def captions_at_limit(tokenize: Callable[[Sequence[str]], Any], dataset: Dataset, chunk: int = 1024) -> dict[str, int]:
    """Captions per split whose tokens fill the text encoder's window: truncated (or exactly
    at the limit). Stored in the record so a silent cut is never silent."""
    counts = {}
    for name, split in dataset.splits.items():
        texts = [c for caps in (split.captions or ()) for c in caps]
        at_limit = 0
        for start in range(0, len(texts), chunk):
            mask = tokenize(texts[start : start + chunk]).attention_mask
            at_limit += int(mask[:, -1].sum())
        counts[name] = at_limit
    return counts
