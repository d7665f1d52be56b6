"""``paired_composites``: two labelled tiles side by side, captioned by their classes (study 003).

Each sample is ``left | right`` (H x 2W) with the caption ``template.format(left=..., right=...)``,
by default "the photo on the left is {left} and the photo on the right is {right}". The right
tile's class differs from the left's with probability ``p_diff`` (default 0.5, as in the study),
else it is the same class; pairs are drawn by seed, within one split's tiles only, so no tile is
shared between train, val and test.

Matching and candidates (what ``image_text_retrieval`` reads): a composite's identity is its
ordered class pair ``left * C + right``, and the split declares the fixed candidate set of all
C x C ordered-pair captions, so image -> text ranks every possible caption (study 003's "all
captions": 10,000 for CIFAR-100) and chance is exact.

Flip safety: the captions name sides, so a horizontal flip of a composite contradicts its
caption; the spec declares ``hflip_safe=False`` and the engine never flips these images. The
train split's augmentation (``augment``) runs per tile before stacking: a small rotation,
shift and colour jitter, fixed per composite by seed (each pair is its own random draw).

Tile sources (``_tiles.py``): ``digits`` (embedded, nothing to install), ``fashion_mnist``
(IDX files; ``root`` defaults to the Debian package's folder) and ``cifar100`` (the python
pickles under ``root``). Val tiles are carved from the official train split by seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from vlbench import hookimpl
from vlbench.errors import UserError
from vlbench.types import Dataset, DatasetSpec, Register, Split

from ._tiles import Tiles, load_cifar100, load_digits_tiles, load_idx

NAME = "paired_composites"
SOURCES = ("digits", "fashion_mnist", "cifar100")
DEFAULTS: dict[str, Any] = {
    "source": "digits",  # digits (embedded) | fashion_mnist (IDX) | cifar100 (python pickles)
    "root": "",  # folder of the source's files; fashion_mnist defaults to the Debian package's
    "pairs": [20000, 2000, 2000],  # composites in train, val, test
    "p_diff": 0.5,  # probability that the two tiles are of different classes
    "template": "the photo on the left is {left} and the photo on the right is {right}",
    "class_names": [],  # replaces the source's class names (index = label)
    "val_fraction": 0.1,  # share of the official train tiles held out for val
    "test_fraction": 0.2,  # digits only (one official split): share held out for test
    "augment": True,  # per-tile rotation/shift/colour jitter on train composites
}
SPLITS = ("train", "val", "test")


def check_options(options: Mapping[str, Any]) -> None:
    """Every check that reads no file; raises UserError naming the option and the fix."""
    where = f"dataset {NAME!r}: option"
    if options["source"] not in SOURCES:
        raise UserError(f"{where} source={options['source']!r}; use one of {list(SOURCES)}.")
    if options["source"] == "cifar100" and not options["root"]:
        raise UserError(
            f"{where} root is not set: point it at the unpacked cifar-100-python folder (or its parent); "
            "vlbench never downloads CIFAR-100."
        )
    pairs = options["pairs"]
    if len(pairs) != 3 or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in pairs):
        raise UserError(f"{where} pairs={pairs}; give three positive counts [train, val, test].")
    for key in ("p_diff",):
        if not 0.0 <= options[key] <= 1.0:
            raise UserError(f"{where} {key}={options[key]}; use a probability in [0, 1].")
    for key in ("val_fraction", "test_fraction"):
        if not 0.0 < options[key] < 1.0:
            raise UserError(f"{where} {key}={options[key]}; use a fraction strictly between 0 and 1.")
    try:
        options["template"].format(left="a", right="b")
    except (KeyError, IndexError, ValueError) as exc:
        raise UserError(
            f"{where} template={options['template']!r} is not a format string with only {{left}} and "
            f"{{right}} ({type(exc).__name__}: {exc})."
        ) from None
    if "{left}" not in options["template"] or "{right}" not in options["template"]:
        raise UserError(f"{where} template must contain both {{left}} and {{right}}, got {options['template']!r}.")
    if not all(isinstance(n, str) and n for n in options["class_names"]):
        raise UserError(f"{where} class_names must be non-empty strings, got {options['class_names']!r}.")


def _official_splits(options: Mapping[str, Any], seed: int) -> tuple[dict[str, Tiles], dict[str, Any]]:
    """Train/val/test tiles; val (and for digits test) carved by seed from one official split."""
    source, root = options["source"], options["root"]
    rng = np.random.default_rng([seed, 101])

    def carve(tiles: Tiles, fraction: float) -> tuple[Tiles, Tiles]:
        order = rng.permutation(len(tiles.labels))
        cut = int(round(fraction * len(order)))
        pick = lambda idx: Tiles(tiles.images[np.sort(idx)], tiles.labels[np.sort(idx)], tiles.class_names, tiles.provenance)  # noqa: E731
        return pick(order[cut:]), pick(order[:cut])

    if source == "digits":
        rest, test = carve(load_digits_tiles(), options["test_fraction"])
    else:
        load = load_cifar100 if source == "cifar100" else load_idx
        rest, test = load(root, "train"), load(root, "test")
    train, val = carve(rest, options["val_fraction"])
    return {"train": train, "val": val, "test": test}, dict(rest.provenance)


def _class_names(options: Mapping[str, Any], tiles: dict[str, Tiles], provenance: dict[str, Any]) -> tuple[str, ...]:
    names = tuple(options["class_names"]) or tiles["train"].class_names
    top = max(int(t.labels.max()) for t in tiles.values() if len(t.labels))
    if top >= len(names):
        given = "option class_names" if options["class_names"] else f"the class names of {provenance['files'][-1]}"
        raise UserError(
            f"dataset {NAME!r}: {given} lists {len(names)} names but the labels go up to {top} "
            f"(files {provenance['files']}). Give one name per label 0..{top} in class_names."
        )
    if any(len(t.labels) == 0 for t in tiles.values()):
        raise UserError(f"dataset {NAME!r}: a split has no tiles; lower val_fraction/test_fraction or use a larger source.")
    return names


def _draw_pairs(labels: np.ndarray, n: int, p_diff: float, rng: np.random.Generator) -> np.ndarray:
    """[n, 2] tile indices: left uniform, right of another class with probability p_diff."""
    classes = np.unique(labels)
    members = {int(c): np.flatnonzero(labels == c) for c in classes}
    pairs = np.empty((n, 2), np.int64)
    left = rng.integers(0, len(labels), n)
    diff = rng.random(n) < p_diff
    for i in range(n):
        c = int(labels[left[i]])
        if diff[i] and len(classes) > 1:
            c = int(rng.choice(classes[classes != c]))
        pool = members[c]
        right = int(pool[rng.integers(0, len(pool))])
        if right == left[i] and len(pool) > 1:  # the same tile twice would be a trivial pair
            right = int(pool[(np.searchsorted(pool, right) + 1) % len(pool)])
        pairs[i] = left[i], right
    return pairs


class _Composites:
    """``Split.load_image``: stack two tiles, each augmented first on the train split; picklable."""

    def __init__(self, images: np.ndarray, pairs: np.ndarray, augment: bool, seed: int) -> None:
        self.images, self.pairs, self.augment, self.seed = images, pairs, augment, seed

    def _tile(self, tile: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        image = torch.from_numpy(tile).permute(2, 0, 1)
        if not self.augment:
            return image
        shift = [int(v) for v in rng.integers(-2, 3, 2)]
        image = TF.affine(image, angle=float(rng.uniform(-10, 10)), translate=shift, scale=1.0, shear=[0.0, 0.0])
        image = TF.adjust_brightness(image, float(rng.uniform(0.8, 1.2)))
        return TF.adjust_contrast(image, float(rng.uniform(0.8, 1.2)))

    def __call__(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 202, index])
        left, right = (self._tile(self.images[t], rng) for t in self.pairs[index])
        return torch.cat([left, right], dim=2).permute(1, 2, 0).numpy()


def build(cache_dir: Any, seed: int, **options: Any) -> Dataset:
    """Tiles are read from ``root`` (or the embedded digits) each time; composites are drawn lazily."""
    options = {**DEFAULTS, **options}
    check_options(options)
    tiles, provenance = _official_splits(options, seed)
    names = _class_names(options, tiles, provenance)
    n_classes = len(names)
    candidates = tuple(
        options["template"].format(left=names[a], right=names[b]) for a in range(n_classes) for b in range(n_classes)
    )
    keys = tuple(range(n_classes * n_classes))
    splits: dict[str, Split] = {}
    stats: dict[str, Any] = {}
    for k, name in enumerate(SPLITS):
        part = tiles[name]
        pairs = _draw_pairs(part.labels, options["pairs"][k], options["p_diff"], np.random.default_rng([seed, 303, k]))
        left, right = part.labels[pairs[:, 0]], part.labels[pairs[:, 1]]
        splits[name] = Split(
            name=name,
            ids=tuple(f"{name}/{i}" for i in range(len(pairs))),
            load_image=_Composites(part.images, pairs, options["augment"] and name == "train", seed),
            captions=tuple((candidates[a * n_classes + b],) for a, b in zip(left.tolist(), right.tolist(), strict=True)),
            identities=tuple((left * n_classes + right).tolist()),
            candidates=candidates,
            candidate_keys=keys,
        )
        stats[name] = {"tiles": len(part.labels), "composites": len(pairs), "different_class": float(np.mean(left != right))}
    info = {
        **provenance,
        "classes": n_classes,
        "tile_size": list(tiles["train"].images.shape[1:3]),
        "n_candidates": len(candidates),
        "template": options["template"],
        "p_diff": options["p_diff"],
        "augment": "per tile before stacking (rotation +-10 deg, shift +-2 px, brightness/contrast 0.8-1.2), train only"
        if options["augment"]
        else "none",
        "splits": stats,
        "val": f"{options['val_fraction']:.0%} of the train tiles, by seed",
        "hflip": "never: captions name sides",
    }
    return Dataset(name=NAME, splits=splits, class_names=names, info=info)


@hookimpl
def vlbench_register_datasets(register: Register) -> None:
    register(
        DatasetSpec(
            name=NAME,
            factory=build,
            check_options=check_options,
            description=(
                "Two tiles side by side (left|right) captioned with their classes (study 003); tiles from "
                "digits (embedded), Fashion-MNIST IDX or CIFAR-100 pickles; candidates = every ordered class pair."
            ),
            options=dict(DEFAULTS),
            provides=frozenset({"image", "captions", "identity"}),
            hflip_safe=False,
        )
    )
