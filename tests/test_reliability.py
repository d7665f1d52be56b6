"""Bad input fails before training: exit 2, one message naming the file/key/sample and the fix,
and the results folder untouched. Each case below is one bad input of the reliability
campaign (issue 16); ``vlbench run`` is called in-process, so a case that slipped past the
preflight would train (and the assertions on the exit code and the folder would fail)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlbench import cli, hookimpl, run_command
from vlbench.errors import UserError
from vlbench.manager import PluginHost
from vlbench.types import Dataset, DatasetSpec, Split

FIXTURES = Path(__file__).parent / "fixtures"

SUITE = """
[suite]
name = "bad"
device = "cpu"

[train]
epochs = 1
batch_size = 4
max_steps_per_epoch = 1
cost_batch_sizes = [1]
cost_budget_s = 0.01

[[tasks]]
name = "{task}"
dataset = "{dataset}"
dataset_options = {{ {dataset_options} }}

[[vision]]
name = "timm:resnet10t"
image_size = [64, 32]
{vision_extra}

[[text]]
name = "clip_text"
options = {{ width = 32, layers = 1, heads = 2, context_length = 16 }}

[[fusions]]
name = "{fusion}"
{fusion_options}
"""


def suite_text(
    task="person_search",
    dataset="rstpreid",
    dataset_options="",
    vision_extra="",
    fusion="contrastive",
    fusion_options="options = { embed_dim = 16 }",
) -> str:
    return SUITE.format(
        task=task,
        dataset=dataset,
        dataset_options=dataset_options,
        vision_extra=vision_extra,
        fusion=fusion,
        fusion_options=fusion_options,
    )


# ---------------------------------------------------------------- fixtures in the real formats


def rstpreid(root: Path, edit: Callable[[list[dict]], None] = lambda records: None) -> Path:
    """A tiny RSTPReid copy (IRRA's data_captions.json + imgs/): 4 train, 2 val, 2 test ids."""
    folder = root / "RSTPReid"
    (folder / "imgs").mkdir(parents=True)
    records, rng = [], np.random.default_rng(0)
    for pid, split in enumerate(["train"] * 4 + ["val"] * 2 + ["test"] * 2):
        for view in range(2):
            name = f"{pid:04d}_{view}.jpg"
            Image.fromarray(rng.integers(0, 255, (48, 24, 3), dtype=np.uint8)).save(folder / "imgs" / name)
            records.append(
                {"id": pid, "img_path": name, "captions": [f"a person number {pid} seen from view {view}"] * 2, "split": split}
            )
    edit(records)
    (folder / "data_captions.json").write_text(json.dumps(records))
    return folder


def multilabel_root(root: Path, edit: Callable[[str], str] = lambda text: text) -> Path:
    shutil.copytree(FIXTURES / "multilabel", root / "ml")
    csv = root / "ml" / "train.csv"
    csv.write_text(edit(csv.read_text()))
    return root / "ml"


def ml_suite(root: Path) -> str:
    return suite_text(
        task="multilabel",
        dataset="multilabel_csv",
        dataset_options=f'root = "{root}", oversample_min = 0',
        fusion="early",
        fusion_options="",
    )


def pedes_suite(root: Path, extra: str = "") -> str:
    return suite_text(dataset_options=f'root = "{root}"{extra}')


def truncate_file(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# ---------------------------------------------------------------- third-party datasets


def _images(n: int) -> Callable[[int], np.ndarray]:
    return lambda i: np.zeros((32, 16, 3), dtype=np.uint8)


class ThirdParty:
    """Datasets a plugin author might ship, each broken in one way."""

    @staticmethod
    def split(name: str, n: int = 4, **columns) -> Split:
        defaults = {"captions": tuple((f"caption {i}",) for i in range(n)), "identities": tuple(i // 2 for i in range(n))}
        return Split(name=name, ids=tuple(f"{name}{i}" for i in range(n)), load_image=_images(n), **{**defaults, **columns})

    def dataset(self, **overrides) -> Dataset:
        splits = {name: self.split(name) for name in ("train", "val", "test")}
        splits.update(overrides)
        return Dataset(name="third", splits=splits)

    @hookimpl
    def vlbench_register_datasets(self, register):
        def raise_user_error(cache_dir, seed):
            raise UserError("third_user: the archive third.zip is missing; download it into root.")

        def raise_bug(cache_dir, seed):
            raise KeyError("split")

        cases = {
            "third_user": raise_user_error,
            "third_bug": raise_bug,
            "third_no_test": lambda cache_dir, seed: Dataset("third", {s: self.split(s) for s in ("train", "val")}),
            "third_empty_val": lambda cache_dir, seed: self.dataset(val=self.split("val", 0)),
            "third_short_column": lambda cache_dir, seed: self.dataset(train=self.split("train", identities=(0, 1))),
            "third_bad_image": lambda cache_dir, seed: self.dataset(
                test=Split(
                    "test",
                    ("t0", "t1"),
                    lambda i: np.zeros((8, 8), dtype=np.float32),
                    captions=(("a",), ("b",)),
                    identities=(0, 1),
                )
            ),
            "third_failing_loader": lambda cache_dir, seed: self.dataset(
                val=Split("val", ("v0", "v1"), lambda i: 1 / 0, captions=(("a",), ("b",)), identities=(0, 1))
            ),
            "third_no_identity": lambda cache_dir, seed: self.dataset(train=self.split("train", identities=None)),
        }
        for name, factory in cases.items():
            register(DatasetSpec(name=name, factory=factory, provides=frozenset({"image", "captions", "identity"})))


# ---------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Path], str | list[str]]  # tmp folder -> suite text (or extra CLI arguments)
    message: str  # a piece of the one-paragraph message
    code: int = 2


def weights_case(tmp: Path, payload, name: str = "w.pt") -> str:
    path = tmp / name
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        torch.save(payload, path)
    return suite_text(
        dataset="synthetic_pedestrians",
        dataset_options="identities = [4, 2, 2], image_size = [64, 32]",
        vision_extra=f'weights = "{path}"',
    )


SYNTHETIC = "identities = [4, 2, 2], image_size = [64, 32]"

CASES = [
    # suite files
    Case("suite file missing", lambda tmp: ["nope.toml"], "nope.toml"),
    Case("suite not TOML", lambda tmp: "[suite\nname=", "TOML"),
    Case(
        "unknown vision component",
        lambda tmp: suite_text(dataset="synthetic_pedestrians").replace("timm:resnet10t", "resnet_nope"),
        "unknown vision component",
    ),
    Case(
        "unknown train option",
        lambda tmp: suite_text(dataset="synthetic_pedestrians").replace("epochs = 1", "epochz = 1"),
        "epochz",
    ),
    Case(
        "negative epochs", lambda tmp: suite_text(dataset="synthetic_pedestrians").replace("epochs = 1", "epochs = -1"), "epochs"
    ),
    Case(
        "nan learning rate",
        lambda tmp: suite_text(dataset="synthetic_pedestrians").replace("epochs = 1", "epochs = 1\nlr = nan"),
        "lr",
    ),
    Case(
        "negative seed",
        lambda tmp: suite_text(dataset="synthetic_pedestrians").replace('device = "cpu"', 'device = "cpu"\nseed = -3'),
        "seed",
    ),
    Case(
        "bad cost batch sizes", lambda tmp: suite_text(dataset="synthetic_pedestrians").replace("[1]", "[0]"), "cost_batch_sizes"
    ),
    # folders and disk
    Case(
        "results folder is a file",
        lambda tmp: [(tmp / "f").write_text("x") and "--results-dir", str(tmp / "f")],
        "is not a folder",
    ),
    Case(
        "results folder under a file",
        lambda tmp: [(tmp / "f").write_text("x") and "--results-dir", str(tmp / "f" / "r")],
        "is not a folder",
    ),
    Case("results folder on a read-only file system", lambda tmp: ["--results-dir", "/proc/vlbench-results"], "not writable"),
    Case("cache folder is a file", lambda tmp: [(tmp / "c").write_text("x") and "--cache-dir", str(tmp / "c")], "cache folder"),
    Case("runs folder is a file", lambda tmp: [(tmp / "t").write_text("x") and "--runs-dir", str(tmp / "t")], "runs folder"),
    # person-search annotations (RSTPReid format)
    Case("dataset root not set", lambda tmp: suite_text(), "option 'root' is not set"),
    Case("dataset root missing", lambda tmp: pedes_suite(tmp / "absent"), "is not a directory"),
    Case(
        "annotation file missing",
        lambda tmp: (rstpreid(tmp) / "data_captions.json").unlink() or pedes_suite(tmp),
        "annotation file not found",
    ),
    Case(
        "annotation JSON truncated",
        lambda tmp: truncate_file(rstpreid(tmp) / "data_captions.json") or pedes_suite(tmp),
        "not valid JSON",
    ),
    Case(
        "annotation not a list",
        lambda tmp: (rstpreid(tmp) / "data_captions.json").write_text("{}") and pedes_suite(tmp),
        "expected a JSON list",
    ),
    Case(
        "record without captions",
        lambda tmp: rstpreid(tmp, lambda r: r[3].pop("captions")) and pedes_suite(tmp),
        "record 3, key 'captions'",
    ),
    Case("captions: []", lambda tmp: rstpreid(tmp, lambda r: r[2].update(captions=[])) and pedes_suite(tmp), "no captions"),
    Case(
        "empty caption",
        lambda tmp: rstpreid(tmp, lambda r: r[12].update(captions=["fine", ""])) and pedes_suite(tmp),
        "caption 1 is empty",
    ),
    Case(
        "blank caption",
        lambda tmp: rstpreid(tmp, lambda r: r[9].update(captions=["  \t "])) and pedes_suite(tmp),
        "caption 0 is empty",
    ),
    Case("id not an integer", lambda tmp: rstpreid(tmp, lambda r: r[0].update(id="7")) and pedes_suite(tmp), "key 'id'"),
    Case("image missing", lambda tmp: (rstpreid(tmp) / "imgs" / "0005_1.jpg").unlink() or pedes_suite(tmp), "0005_1.jpg"),
    Case(
        "corrupt image in the test split",
        lambda tmp: truncate_file(rstpreid(tmp) / "imgs" / "0007_0.jpg", 0.3) or pedes_suite(tmp),
        "0007_0.jpg does not decode",
    ),
    Case(
        "text file named .jpg",
        lambda tmp: (rstpreid(tmp) / "imgs" / "0006_1.jpg").write_text("hello") and pedes_suite(tmp),
        "0006_1.jpg does not decode",
    ),
    Case("dataset option out of range", lambda tmp: rstpreid(tmp) and pedes_suite(tmp, ", val_fraction = 1.5"), "val_fraction"),
    Case(
        "synthetic option out of range",
        lambda tmp: suite_text(dataset="synthetic_pedestrians", dataset_options="image_size = [32, 16]"),
        "image_size[1]",
    ),
    # multi-label CSV
    Case(
        "label column empty everywhere",
        lambda tmp: ml_suite(
            multilabel_root(
                tmp,
                lambda t: "\n".join(
                    [t.splitlines()[0]] + [f"{line.split(',', 2)[0]},,{line.split(',', 2)[2]}" for line in t.splitlines()[1:]]
                ),
            )
        ),
        "no sample has a label",
    ),
    Case(
        "label 12 (not a competition id)",
        lambda tmp: ml_suite(multilabel_root(tmp, lambda t: t.replace("0.jpg,1,", "0.jpg,12,"))),
        "line 2: label '12'",
    ),
    Case("CSV header wrong", lambda tmp: ml_suite(multilabel_root(tmp, lambda t: t.replace("ImageID", "Image"))), "header"),
    Case(
        "duplicate ImageID",
        lambda tmp: ml_suite(multilabel_root(tmp, lambda t: t.replace("1.jpg,", "0.jpg,", 1))),
        "repeats line 2",
    ),
    Case(
        "image folder wrong",
        lambda tmp: ml_suite(multilabel_root(tmp)).replace("oversample_min = 0", 'oversample_min = 0, images_dir = "imgs"'),
        "images are not in",
    ),
    Case(
        "CSV image corrupt",
        lambda tmp: truncate_file(multilabel_root(tmp) / "data" / "5.jpg", 0.2) or ml_suite(tmp / "ml"),
        "5.jpg does not decode",
    ),
    # weights files
    Case(
        "weights file missing",
        lambda tmp: suite_text(
            dataset="synthetic_pedestrians", dataset_options=SYNTHETIC, vision_extra=f'weights = "{tmp / "absent.pt"}"'
        ),
        "absent.pt",
    ),
    Case("weights file garbage", lambda tmp: weights_case(tmp, b"\x00garbage" * 10, "w.safetensors"), "could not be read"),
    Case("weights pickled objects", lambda tmp: weights_case(tmp, {"w": Path("/etc")}), "pickled objects"),
    Case("weights of another model", lambda tmp: weights_case(tmp, {"fc.weight": torch.zeros(3, 3)}), "do not fit"),
    # third-party dataset plugins (issue 15: a factory's UserError stops the suite, exit 2)
    Case("third-party factory raises UserError", lambda tmp: suite_text(dataset="third_user"), "third.zip is missing"),
    Case("third-party factory has a bug", lambda tmp: suite_text(dataset="third_bug"), "could not be built: KeyError"),
    Case("third-party dataset without a test split", lambda tmp: suite_text(dataset="third_no_test"), "no test split"),
    Case("third-party empty val split", lambda tmp: suite_text(dataset="third_empty_val"), "split 'val' is empty"),
    Case(
        "third-party column of the wrong length", lambda tmp: suite_text(dataset="third_short_column"), "2 identity for 4 images"
    ),
    Case("third-party loader returns floats", lambda tmp: suite_text(dataset="third_bad_image"), "HxWx3 uint8"),
    Case("third-party loader raises", lambda tmp: suite_text(dataset="third_failing_loader"), "ZeroDivisionError"),
    Case("third-party dataset without identities", lambda tmp: suite_text(dataset="third_no_identity"), "no identity"),
]


def tree(folder: Path) -> dict[str, bytes]:
    return (
        {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} if folder.exists() else {}
    )


@pytest.fixture(scope="module")
def host():
    return PluginHost([("third", ThirdParty())])


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_exits_2_with_a_message_and_writes_nothing(case, tmp_path, monkeypatch, capsys, host):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(run_command, "plugin_host", lambda: host)
    (tmp_path / "runs" / "results" / "bad").mkdir(parents=True)
    (tmp_path / "runs" / "results" / "bad" / "0123456789abcdef.json").write_text("{}")  # a file already there
    before = tree(tmp_path / "runs")
    made = case.setup(tmp_path)
    if isinstance(made, str):
        (tmp_path / "s.toml").write_text(made)
        argv = ["run", "s.toml"]
    else:
        argv = ["run", *(made if made[0].endswith(".toml") else ["s.toml", *made])]
        if not (tmp_path / "s.toml").exists():
            (tmp_path / "s.toml").write_text(suite_text(dataset="synthetic_pedestrians", dataset_options=SYNTHETIC))
    code = cli.main([*argv, "--cache-dir", str(tmp_path / "cache")] if "--cache-dir" not in argv else argv)
    out, err = capsys.readouterr()
    assert code == case.code, out + err
    assert err.startswith("error: ") and case.message in err, err
    assert "Traceback" not in out + err and len(err.strip().splitlines()) == 1, err
    assert tree(tmp_path / "runs") == before  # nothing written (records, runs folder), nothing removed


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


def test_disk_too_full_for_the_suite_is_found_before_training(tmp_path, monkeypatch, capsys):
    import shutil as shutil_module

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(suite_text(dataset="synthetic_pedestrians", dataset_options=SYNTHETIC))
    monkeypatch.setattr(shutil_module, "disk_usage", lambda path: shutil_module._ntuple_diskusage(10**9, 10**9 - 2**20, 2**20))
    code = cli.main(["run", "s.toml", "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert code == 2 and "not enough free disk" in err and "MiB needed" in err and "GiB free" in err
    assert not (tmp_path / "runs").exists()
