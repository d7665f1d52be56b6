"""What the caption-file loaders (Karpathy JSON, COCO captions JSON) share: option checks,
reading a JSON file with a clear error, and checking that every named image exists."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vlbench.errors import UserError


def require_root(name: str, options: Mapping[str, Any], layout: str) -> Path:
    if not isinstance(options["root"], str) or not options["root"]:
        raise UserError(
            f"dataset {name!r}: option 'root' is not set. Set root to the folder that holds {layout} in the "
            "dataset options of the suite; vlbench never downloads it."
        )
    root = Path(options["root"]).expanduser()
    if not root.is_dir():
        raise UserError(f"dataset {name!r}: root {str(root)!r} is not a directory. Set root to the folder that holds {layout}.")
    return root


def read_json(file: Path) -> tuple[Any, str]:
    """The parsed file and its sha256."""
    if not file.is_file():
        raise UserError(f"{file}: annotation file not found. Check the dataset options root and file names.")
    data = file.read_bytes()
    try:
        return json.loads(data), hashlib.sha256(data).hexdigest()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{file}: not valid JSON ({exc}). Restore the file from the dataset archive.") from None


def check_images_exist(name: str, annotation: Path, paths: Sequence[Path]) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:3])
        raise UserError(
            f"dataset {name!r}: {len(missing)} of {len(paths)} images named in {annotation} are missing, e.g. "
            f"{shown}. Unpack the complete image archive there, or set the dataset's image folder option."
        )


def clean_caption(file: Path, where: str, caption: Any) -> str:
    if not isinstance(caption, str) or not caption.strip():
        raise UserError(
            f"{file}: {where}: expected a non-empty caption string, got {caption!r:.80}. Fix the entry or "
            "restore the file from the dataset archive."
        )
    return caption.strip()
