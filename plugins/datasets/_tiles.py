"""Labelled small images ("tiles") from local files in their public formats, never downloaded.

* CIFAR-100 "python version" (studies.md §3.6): pickles ``train``, ``test`` and ``meta`` in
  ``cifar-100-python/``; ``data`` N x 3072 uint8 (R, G, B planes of 32 x 32), ``fine_labels``,
  ``fine_label_names``. Read with an unpickler that only rebuilds numpy arrays, so a hostile
  file cannot run code.
* Fashion-MNIST: the four IDX files (gzipped or not), as the Debian package
  ``dataset-fashion-mnist`` installs them in ``/usr/share/datasets/fashion-mnist``.
* scikit-learn's digits (8 x 8, 1,797 images, shipped inside scikit-learn): the fallback that
  needs nothing installed, upscaled to 32 x 32.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from vlbench.errors import UserError

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"  # the Debian package's location
FASHION_MNIST_CLASSES = ("t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")
DIGIT_CLASSES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DIGITS_SIZE = 32


@dataclass(frozen=True)
class Tiles:
    """Images [N, H, W, 3] uint8 and labels [N] of one official split, with class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    provenance: dict


# ---------------------------------------------------------------- CIFAR-100


class _ArraysOnly(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; any other global is refused."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR pickle")


def _cifar_fail(file: Path, problem: str) -> UserError:
    return UserError(
        f'{file}: {problem}. Expected the CIFAR-100 "python version" (cifar-100-python.tar.gz from '
        f"https://www.cs.toronto.edu/~kriz/cifar.html, unpacked): files train, test and meta. Re-extract the "
        f"archive and point the dataset option root at the cifar-100-python folder (or its parent)."
    )


def _read_pickle(file: Path) -> dict:
    if not file.is_file():
        raise _cifar_fail(file, "file not found")
    data = file.read_bytes()
    try:
        obj = _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as exc:
        raise _cifar_fail(
            file, f"not a readable CIFAR pickle, truncated or of another format ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(obj, dict):
        raise _cifar_fail(file, f"holds a {type(obj).__name__}, not a dict")
    obj["_sha256"] = hashlib.sha256(data).hexdigest()
    return obj


def cifar100_root(root: str) -> Path:
    base = Path(root).expanduser()
    return base / "cifar-100-python" if (base / "cifar-100-python").is_dir() else base


def load_cifar100(root: str, split: str) -> Tiles:
    folder = cifar100_root(root)
    meta_file, batch_file = folder / "meta", folder / split
    meta = _read_pickle(meta_file)
    names = meta.get("fine_label_names")
    if not isinstance(names, list) or not names:
        found = sorted(k for k in meta if not k.startswith("_"))
        raise _cifar_fail(meta_file, f"has no 'fine_label_names' (keys {found}; CIFAR-10's meta has 'label_names' instead)")
    batch = _read_pickle(batch_file)
    if "fine_labels" not in batch or "data" not in batch:
        found = sorted(k for k in batch if not k.startswith("_"))
        raise _cifar_fail(batch_file, f"has no 'data'/'fine_labels' (keys {found}; a CIFAR-10 batch has 'labels')")
    data, labels = np.asarray(batch["data"]), np.asarray(batch["fine_labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise _cifar_fail(batch_file, f"'data' is {data.dtype} {data.shape} for {len(labels)} labels; expected uint8 [N, 3072]")
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # R, G, B planes -> HWC
    provenance = {
        "source": "cifar100",
        "files": [str(batch_file), str(meta_file)],
        "sha256": {split: batch["_sha256"], "meta": meta["_sha256"]},
    }
    return Tiles(np.ascontiguousarray(images), labels, tuple(str(n) for n in names), provenance)


# ---------------------------------------------------------------- IDX (Fashion-MNIST)


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    raise UserError(
        f"IDX file {folder / stem}[.gz] not found. Point the dataset option root at the folder with the four "
        f"Fashion-MNIST IDX files; on Debian/Ubuntu `apt-get install dataset-fashion-mnist` puts them in {FASHION_MNIST_DIR}."
    )


def _read_idx(file: Path, dims: int) -> np.ndarray:
    """An IDX array of unsigned bytes with ``dims`` dimensions (magic 0x0000 08 0d)."""
    raw = file.read_bytes()
    try:
        raw = gzip.decompress(raw) if file.suffix == ".gz" else raw
    except (OSError, EOFError) as exc:
        raise UserError(f"{file}: not a readable gzip file ({exc}). Reinstall or re-download the IDX files.") from None
    if len(raw) < 4 + 4 * dims or raw[:3] != b"\0\0\x08" or raw[3] != dims:
        raise UserError(
            f"{file}: not an IDX file of {dims}-d unsigned bytes (magic {raw[:4].hex() or 'missing'}, "
            f"expected 000008{dims:02x}). Use the original Fashion-MNIST/MNIST IDX files."
        )
    shape = struct.unpack(f">{dims}I", raw[4 : 4 + 4 * dims])
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise UserError(
            f"{file}: the header says {shape} ({int(np.prod(shape))} bytes) but {body.size} bytes follow; "
            "the file is truncated or corrupt. Reinstall or re-download it."
        )
    return body.reshape(shape)


def load_idx(root: str, split: str, class_names: tuple[str, ...] = FASHION_MNIST_CLASSES) -> Tiles:
    folder = Path(root or FASHION_MNIST_DIR).expanduser()
    image_file, label_file = (_idx_file(folder, stem) for stem in IDX_FILES[split])
    images, labels = _read_idx(image_file, 3), _read_idx(label_file, 1).astype(np.int64)
    if len(images) != len(labels):
        raise UserError(
            f"{image_file} holds {len(images)} images but {label_file} {len(labels)} labels: the counts must "
            "match. The two files come from different sets or one is truncated; reinstall them."
        )
    rgb = np.repeat(images[..., None], 3, axis=-1)
    provenance = {
        "source": "fashion_mnist",
        "files": [str(image_file), str(label_file)],
        "sha256": {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in (image_file, label_file)},
    }
    return Tiles(rgb, labels, class_names, provenance)


# ---------------------------------------------------------------- embedded fallback


def load_digits_tiles() -> Tiles:
    """scikit-learn's 8 x 8 digits (values 0..16), upscaled to 32 x 32 RGB; one split of 1,797."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy((digits.images * (255.0 / 16.0)).round().astype(np.uint8))[:, None]
    big = TF.resize(small, [DIGITS_SIZE, DIGITS_SIZE], antialias=True)
    rgb = big.repeat(1, 3, 1, 1).permute(0, 2, 3, 1).numpy()
    return Tiles(
        np.ascontiguousarray(rgb),
        digits.target.astype(np.int64),
        DIGIT_CLASSES,
        {"source": "digits", "files": ["sklearn.datasets.load_digits (bundled)"], "upscaled_to": DIGITS_SIZE},
    )
