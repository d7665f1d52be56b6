"""`vlbench leaderboard build|publish`: every writer into one folder, and the manifest that
lets a rebuild delete only its own stale files."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vlbench.errors import UserError
from vlbench.leaderboard import csv_files, markdown, site
from vlbench.leaderboard.plots import write_plots
from vlbench.leaderboard.tables import Leaderboard, load

# Lists the files a build wrote, so a rebuild deletes only its own stale files. Not *.json:
# an output folder may hold the results folder, and every *.json there is read as a record.
MANIFEST = ".vlbench-leaderboard-files"


@dataclass(frozen=True)
class BuildResult:
    board: Leaderboard
    out: Path
    files: list[Path]


def build(results_dir: Path, out: Path, suites: Path | None = None, include_noisy: bool = False) -> BuildResult:
    """Write LEADERBOARD.md, leaderboard.csv (+ parquet) and the static site into ``out``."""
    board = load(results_dir, suites, include_noisy)

    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        plots = write_plots(board, out)
        files = [out / p for p in plots.values()]
        files += csv_files.write_tables(board, out)
        files.append(markdown.write_markdown(board, out / "LEADERBOARD.md", plots))
        files += site.write_pages(board, out, plots)
        _replace_manifest(out, files)
    except OSError as exc:
        raise UserError(f"cannot write the leaderboard to {out}: {exc}. Choose a writable output folder (--out).") from None
    return BuildResult(board, out, files)


def publish(results_dir: Path, out: Path, suites: Path | None = None, include_noisy: bool = False) -> BuildResult:
    """The site as a self-contained folder for any static host; ``out`` must be empty, new,
    or a folder published before (its stale files are removed)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MANIFEST).is_file())):
        raise UserError(
            f"{out} exists and is not an empty folder or an earlier `vlbench leaderboard publish` output; refusing to "
            "write into it. Pass a new or empty folder to --out."
        )
    result = build(results_dir, out, suites, include_noisy)
    marker = out / ".nojekyll"  # GitHub Pages: serve the folder as it is
    marker.touch()
    _replace_manifest(out, [*result.files, marker])
    return result


def _replace_manifest(out: Path, files: Sequence[Path]) -> None:
    """Delete what the previous build wrote and this one did not, then record this build's files."""
    manifest = out / MANIFEST
    now = {f.relative_to(out).as_posix() for f in files}
    before = set(manifest.read_text(encoding="utf-8").split("\n")) - {""} if manifest.is_file() else set()
    for name in sorted(before - now):
        stale = out / name
        if ".." not in Path(name).parts and not Path(name).is_absolute() and stale.is_file():
            stale.unlink()
            for parent in stale.parents:
                if parent == out or any(parent.iterdir()):
                    break
                parent.rmdir()
    manifest.write_text("\n".join(sorted(now)) + "\n", encoding="utf-8")
