"""Result records: validated against the JSON Schema on write and on read, atomic files, resume."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import stat
import tempfile
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema

from vlbench.errors import VlbenchError

if TYPE_CHECKING:  # the types pull in torch; reading records (the leaderboard) needs none of it
    from vlbench.types.runs import ResultRecord

SCHEMA_VERSION = 1
MAX_RECORD_BYTES = 16 * 2**20  # records are 15-60 KB; anything this big is not one
MAX_DEPTH = 32  # records nest about 8 deep; json's C parser would hit RecursionError near 1000
MAX_REPORTED = 8  # schema problems listed per record; the rest are counted


class RecordError(VlbenchError):
    """A record that does not follow the schema."""


def schema_text() -> str:
    """The record schema (JSON Schema draft 2020-12), as shipped in the package."""
    return resources.files("vlbench").joinpath("schemas/record.schema.json").read_text(encoding="utf-8")


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_text()))


def problems(data: Any) -> list[str]:
    """Everything wrong with a record dict; empty when it is valid. The schema states the
    shape (schemas/record.schema.json); two rules it cannot state are checked here: no NaN
    or infinity anywhere, and each split's main metric has a value and a chance level or a
    named baseline."""
    if not isinstance(data, dict):
        return [f"expected a JSON object, got {type(data).__name__}"]
    found = [f"{path} = {value} is not a finite number (JSON cannot hold it)" for path, value in non_finite(data)]
    errors = sorted(_validator().iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    found += [_describe(error) for error in errors[:MAX_REPORTED]]
    if len(errors) > MAX_REPORTED:
        found.append(f"and {len(errors) - MAX_REPORTED} more schema problems")
    if found or data["status"] == "error" or data["metrics"].get("quality") is False:
        return found
    return _metric_problems(data["metrics"])


def _describe(error: jsonschema.ValidationError) -> str:
    """One schema violation as "at <path>: <what>", the path in the record's own terms."""
    if error.context:  # oneOf/anyOf: the alternative that came closest says more than "not valid under any"
        error = jsonschema.exceptions.best_match(error.context)
    where = error.json_path.removeprefix("$.").removeprefix("$") or "the top level"
    message = error.message if len(error.message) <= 300 else error.message[:299] + "…"
    return f"at {where}: {message}"


def _metric_problems(metrics: Mapping[str, Any]) -> list[str]:
    found = []
    for split, block in metrics["splits"].items():
        if block["main"] not in block["values"]:
            found.append(f"metrics.splits.{split}: main metric {block['main']!r} has no value")
        elif reference(block, block["main"]) is None:
            found.append(f"metrics.splits.{split}: no chance level and no baseline for {block['main']!r}")
    return found


def reference(block: Mapping[str, Any], metric: str, higher_is_better: bool = True) -> tuple[str, float] | None:
    """What a score of ``metric`` in a split's metrics block is read against, labelled:
    ``("chance", value)``, else the best named baseline (``("baseline: most frequent train caption", value)``)."""
    chance = block.get("chance") or {}
    if metric in chance:
        return "chance", chance[metric]
    scored = [(values[metric], name) for name, values in (block.get("baselines") or {}).items() if metric in values]
    if not scored:
        return None
    value, name = max(scored) if higher_is_better else min(scored)
    return f"baseline: {name}", value


def non_finite(value: Any, path: str = "") -> list[tuple[str, float]]:
    """(key path, value) of every NaN or infinity anywhere in ``value``."""
    if isinstance(value, float):
        return [] if math.isfinite(value) else [(path, value)]
    if isinstance(value, dict):
        return [found for k, v in value.items() for found in non_finite(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [found for i, v in enumerate(value) for found in non_finite(v, f"{path}[{i}]")]
    return []


def to_dict(record: ResultRecord) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(record), default=_jsonable))


def _jsonable(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    if hasattr(value, "tolist"):  # numpy / torch scalars and arrays
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in a record")


def record_path(results_dir: Path, suite: str, run_id: str) -> Path:
    return Path(results_dir) / suite / f"{run_id}.json"


def write_record(record: ResultRecord, results_dir: Path) -> Path:
    """Validate, then write atomically: a reader sees the old file or the new one, never half."""
    data = to_dict(record)
    found = problems(data)
    if found:
        raise RecordError(f"refusing to write record {record.run_id}: {'; '.join(found)}")
    path = record_path(results_dir, record.suite, record.run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{record.run_id}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide results from the group that reads them
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_record(path: Path) -> dict[str, Any]:
    """A validated record dict, or RecordError naming the file and what is wrong. Reads only
    regular files (a FIFO or device named x.json never blocks), at most MAX_RECORD_BYTES,
    nested at most MAX_DEPTH deep."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise RecordError(f"{path}: unreadable record ({exc.strerror or exc})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RecordError(f"{path}: not a regular file; a record is a plain JSON file")
        if info.st_size > MAX_RECORD_BYTES:
            raise RecordError(f"{path}: {info.st_size} bytes, over the {MAX_RECORD_BYTES // 2**20} MiB a record may have")
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read(MAX_RECORD_BYTES + 1)
        data = json.loads(raw.decode("utf-8"))
    except RecordError:
        raise
    except RecursionError:
        raise RecordError(f"{path}: nested too deeply to be a record") from None
    except (OSError, ValueError) as exc:
        raise RecordError(f"{path}: unreadable record ({exc})") from None
    finally:
        os.close(fd)
    if _depth(data) > MAX_DEPTH:
        raise RecordError(f"{path}: nested more than {MAX_DEPTH} levels deep; a record nests about 8")
    found = problems(data)
    if found:
        raise RecordError(f"{path}: {'; '.join(found)}")
    return data


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            if level > MAX_DEPTH:
                return level
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def finished_run_ids(results_dir: Path, suite: str, warn: Callable[[str], Any] | None = None) -> set[str]:
    """Runs whose successful record is already on disk."""
    return set(finished_records(results_dir, suite, warn))


def finished_records(
    results_dir: Path, suite: str, warn: Callable[[str], Any] | None = None
) -> dict[str, tuple[Path, dict[str, Any]]]:
    """run id -> (path, record) of every successful record on disk (resume checks their
    fingerprints). A file that is not a valid record is skipped; ``warn`` hears its name and why."""
    found = {}
    for path in sorted((Path(results_dir) / suite).glob("*.json")):
        try:
            data = read_record(path)
        except RecordError as exc:
            if warn is not None:
                warn(f"skipped {exc}")
            continue
        if data["status"] == "ok":
            found[data["run_id"]] = (path, data)
    return found
