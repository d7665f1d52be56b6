"""``vlbench new-plugin NAME``: a new plugin package that installs and passes the conformance kit.

Writes ``NAME/`` with a pyproject (its entry point in the ``vlbench`` group), one plugin
module under ``src/``, a tests/ file subclassing the kit's contract, and a README. The
component is a working minimal one, a starting point to replace:

- ``encoder``: a two-layer CNN vision encoder,
- ``task``: top-1 multi-label accuracy (classification objective),
- ``fusion``: CLIP-style pooled projections (embedding objective).
"""

from __future__ import annotations

import argparse
import keyword
import re
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

from vlbench.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

# What `vlbench new-plugin --kind` can start a package with (not component kinds: "encoder" is a vision encoder).
STARTER_TEMPLATES = ("encoder", "task", "fusion")
# PEP 508 distribution names
_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)

PYPROJECT = """\
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "$dist"
version = "0.1.0"
description = "A vlbench plugin: the $kind $component."
readme = "README.md"
requires-python = ">=3.10"
dependencies = ["vlbench>=$vlbench_version"]

[project.optional-dependencies]
test = ["pytest>=8"]

# Named after the import package, so no other distribution can take the entry-point name.
[project.entry-points.vlbench]
"$package.$kind" = "$package.$kind"

[tool.setuptools.packages.find]
where = ["src"]
"""

ENCODER = '''\
"""$component: a vision encoder for vlbench. Replace the layers with your model."""

from __future__ import annotations

import torch
from torch import nn

from vlbench import hookimpl
from vlbench.types import EncoderOutput, Register, VisionEncoder, VisionEncoderSpec, VisionInfo


class ${cls}Encoder(VisionEncoder):
    """Called as factory(image_size=(H, W), pretrained=bool, weights=path | None, **options)."""

    def __init__(self, image_size: tuple[int, int], pretrained: bool = False, weights: str | None = None, width: int = 32):
        super().__init__()
        if pretrained:
            raise ValueError("$component has no pretrained weights: use pretrained = false")
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())
        h, w = image_size
        grid = (-(-h // 4), -(-w // 4))  # two stride-2 convolutions: ceil(side / 4)
        self.info = VisionInfo(token_dim=width, pooled_dim=width, input_size=(h, w),
                               mean=(0.5,) * 3, std=(0.5,) * 3, grid_size=grid)
        if weights:
            self.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        tokens = self.body(images).flatten(2).transpose(1, 2)  # [B, C, h, w] -> [B, h*w, C], row-major
        return EncoderOutput(tokens=tokens, pooled=tokens.mean(1))


@hookimpl
def vlbench_register_vision_encoders(register: Register) -> None:
    register(VisionEncoderSpec(name="$component", factory=${cls}Encoder, description="$component vision encoder",
                               options={"width": 32}, default_image_size=(64, 64), family="${cls}"))
'''

TASK = '''\
"""$component: a task for vlbench. A hit is a top-scoring class among the image's labels."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from vlbench import hookimpl
from vlbench.types import Batch, Dataset, Metrics, Register, Split, SplitLoader, TaskSpec


class ${cls}Task:
    objective = "classification"  # the model offers classify(images, text) -> logits [B, C]
    required_fields = frozenset({"image", "labels"})
    main_metric = "top1"

    def num_classes(self, dataset: Dataset) -> int:
        return len(dataset.class_names)

    def loss(self, model: Any, batch: Batch) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(model.classify(batch.images, batch.text).float(), batch.labels)

    def evaluate(self, model: Any, split: Split, loader: SplitLoader) -> Metrics:
        reads_text = getattr(model, "text", None) is not None and split.captions is not None
        logits = []
        with torch.inference_mode(), loader.autocast():
            for index, images in loader.images(split):
                text = None
                if reads_text:
                    _, text = next(iter(loader.texts([split.captions[i][0] for i in index.tolist()], len(index))))
                logits.append(model.classify(images, text).float().cpu())
        scores = torch.cat(logits)
        hits = [c in labels for c, labels in zip(scores.argmax(1).tolist(), split.labels)]
        # A random scorer's top class is any class alike: it hits |labels| / C of the time.
        chance = sum(len(labels) for labels in split.labels) / (len(split) * scores.shape[1])
        return Metrics(values={"top1": 100.0 * sum(hits) / len(hits)}, main="top1",
                       chance={"top1": 100.0 * chance}, units={"top1": "%"})


@hookimpl
def vlbench_register_tasks(register: Register) -> None:
    register(TaskSpec(name="$component", factory=${cls}Task, description="$component: top-1 label accuracy",
                      objective="classification", required_fields=${cls}Task.required_fields,
                      default_dataset="synthetic_scenes"))
'''

FUSION = '''\
"""$component: a fusion for vlbench. CLIP-style: pooled features, linear projections, unit norm."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from vlbench import hookimpl
from vlbench.types import EncoderOutput, FusionSpec, Register, TextInfo, VisionInfo


class ${cls}Fusion(nn.Module):
    """The embedding objective: embed_image, embed_text (unit vectors) and logit_scale."""

    def __init__(self, vision: VisionInfo, text: TextInfo | None, num_classes: int | None = None, embed_dim: int = 64):
        super().__init__()
        if text is None:
            raise ValueError("$component aligns images with captions: it needs a text encoder")
        self.image_proj = nn.Linear(vision.pooled_dim, embed_dim)
        self.text_proj = nn.Linear(text.pooled_dim, embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))  # CLIP's initial temperature

    def embed_image(self, out: EncoderOutput) -> torch.Tensor:
        return F.normalize(self.image_proj(out.pooled), dim=-1)

    def embed_text(self, out: EncoderOutput) -> torch.Tensor:
        return F.normalize(self.text_proj(out.pooled), dim=-1)

    def logit_scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=100.0)


@hookimpl
def vlbench_register_fusions(register: Register) -> None:
    register(FusionSpec(name="$component", factory=${cls}Fusion, description="$component: pooled projections",
                        options={"embed_dim": 64}, objectives=frozenset({"embedding"}), uses_text=True))
'''

TEST = '''\
"""vlbench's conformance kit (a pytest plugin installed with vlbench) over this package."""

from vlbench.testing import $contract


class Test${cls}($contract):
    spec_name = "$component"
    distribution = "$dist"
'''

README = """\
# $dist

A vlbench plugin adding the $kind `$component`.

```bash
pip install -e ".[test]"          # offline: pip install --no-build-isolation --no-deps -e .
vlbench plugins                   # lists $component with its plugin, distribution and version
pytest                            # the conformance kit: contract + a tiny end-to-end run
vlbench check-plugin $dist        # the same contracts, as a pass / fail / skip table
```

Use it in a suite:

```toml
$suite
```

The code is in `src/$package/$kind.py`; vlbench's docs/writing-plugins.md explains every part
and docs/hooks.md every hook.
"""

SUITES = {
    "encoder": """[suite]
name = "$package"

[[tasks]]
name = "person_search"

[[vision]]
name = "$component"
image_size = [128, 64]

[[text]]
name = "clip_text"
options = { width = 256, layers = 4, heads = 4 }

[[fusions]]
name = "contrastive\"""",
    "task": """[suite]
name = "$package"

[[tasks]]
name = "$component"

[[vision]]
name = "mobilenetv3_small_100"

[[text]]
name = "clip_text"
options = { width = 256, layers = 4, heads = 4 }

[[fusions]]
name = "late\"""",
    "fusion": """[suite]
name = "$package"

[[tasks]]
name = "person_search"

[[vision]]
name = "mobilenetv3_small_100"
image_size = [128, 64]

[[text]]
name = "clip_text"
options = { width = 256, layers = 4, heads = 4 }

[[fusions]]
name = "$component\"""",
}

MODULES = {"encoder": ENCODER, "task": TASK, "fusion": FUSION}
CONTRACTS = {"encoder": "VisionEncoderContract", "task": "TaskContract", "fusion": "FusionContract"}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "new-plugin",
        help="write a new plugin package that installs and passes the conformance kit",
        # The docstring's whole body (the list of kinds included), kept as written.
        description=__doc__.split("\n\n", 1)[1].replace("``", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", help="distribution name, e.g. vlbench-acme (package vlbench_acme, component acme)")
    parser.add_argument(
        "--kind", choices=STARTER_TEMPLATES, default="encoder", help="the component to start with (default: encoder)"
    )
    parser.add_argument("--dir", type=Path, default=Path("."), help="where to create the NAME/ folder (default: .)")
    parser.set_defaults(func=cmd_new_plugin)


def cmd_new_plugin(args: argparse.Namespace, console: Console) -> int:
    root = write_plugin(args.name, args.kind, args.dir)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        console.print(f"wrote {path}")
    console.print(
        f"next: pip install -e {root}  (offline: add --no-build-isolation --no-deps), then\n"
        f"      vlbench check-plugin {args.name}   and   pytest {root / 'tests'}"
    )
    return 0


def names(dist: str) -> dict[str, str]:
    """Package, component and class names derived from a distribution name."""
    if not _NAME.match(dist):
        raise UserError(
            f"new-plugin: {dist!r} is not a valid distribution name: use letters, digits, '-', '_' and '.', e.g. vlbench-acme."
        )
    package = re.sub(r"[-_.]+", "_", dist).lower()
    if not package.isidentifier() or keyword.iskeyword(package):
        raise UserError(
            f"new-plugin: {dist!r} gives the import package {package!r}, which is not a Python identifier; start the name with a letter."
        )
    component = package.removeprefix("vlbench_") or package
    return {"dist": dist, "package": package, "component": component, "cls": "".join(p.title() for p in component.split("_"))}


def write_plugin(dist: str, kind: str, parent: Path) -> Path:
    """Write the package folder ``parent/dist`` and return it; refuses to touch an existing one."""
    import vlbench

    values = {**names(dist), "kind": kind, "contract": CONTRACTS[kind], "vlbench_version": vlbench.__version__}
    root = Path(parent) / dist
    if root.exists():
        raise UserError(f"new-plugin: {root} already exists; choose another --dir or NAME (nothing was written).")
    values["suite"] = Template(SUITES[kind]).substitute(values)
    files = {
        "pyproject.toml": PYPROJECT,
        "README.md": README,
        f"src/{values['package']}/__init__.py": '"""$dist: a vlbench plugin."""\n',
        f"src/{values['package']}/{kind}.py": MODULES[kind],
        f"tests/test_{values['package']}.py": TEST,
    }
    for relative, template in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(Template(template).substitute(values))
    return root
