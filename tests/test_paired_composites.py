"""paired_composites and its tile sources on fixtures in the real formats (a CIFAR-100 python
pickle, gzipped IDX files), the embedded digits, bad input, and flip safety end to end."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from test_caption_loaders import write_karpathy

from vlbench import engine, hookimpl
from vlbench.errors import SuiteError, UserError
from vlbench.manager import PluginHost
from vlbench.plugins.datasets import _tiles
from vlbench.plugins.datasets import paired_composites as pc
from vlbench.suite import load_suite
from vlbench.types import DatasetSpec, EncoderOutput, VisionEncoder, VisionEncoderSpec, VisionInfo

FASHION = Path(_tiles.FASHION_MNIST_DIR)


def write_cifar100(folder: Path, n_train: int = 40, n_test: int = 20, n_classes: int = 5, names: int | None = None) -> Path:
    """The python-version layout: pickles of dicts (protocol 2, as the Python 2 originals)."""
    folder = folder / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        batch = {
            "batch_label": f"{split} batch",
            "filenames": [f"img_{i}.png" for i in range(n)],
            "fine_labels": [i % n_classes for i in range(n)],
            "coarse_labels": [0] * n,
            "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        }
        (folder / split).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {"fine_label_names": [f"class{c}" for c in range(names or n_classes)], "coarse_label_names": ["all"]}
    (folder / "meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


def write_idx(folder: Path, n_train: int = 30, n_test: int = 20, label_count: int | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = _tiles.IDX_FILES[split]
        pixels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (folder / f"{images}.gz").write_bytes(gzip.compress(b"\0\0\x08\x03" + struct.pack(">3I", n, 28, 28) + pixels.tobytes()))
        m = label_count if label_count is not None else n
        (folder / f"{labels}.gz").write_bytes(
            gzip.compress(b"\0\0\x08\x01" + struct.pack(">I", m) + bytes(i % 10 for i in range(m)))
        )
    return folder


def test_digits_composites_are_deterministic_captioned_and_keyed() -> None:
    ds = pc.build(None, seed=3, pairs=[300, 50, 60])
    again = pc.build(None, seed=3, pairs=[300, 50, 60])
    train = ds.splits["train"]
    assert len(train) == 300 and len(ds.splits["test"]) == 60
    assert np.array_equal(train.load_image(7), again.splits["train"].load_image(7))
    image = train.load_image(0)
    assert image.shape == (32, 64, 3) and image.dtype == np.uint8
    names = ds.class_names
    assert len(train.candidates) == 100 and list(train.candidate_keys) == list(range(100))
    for caps, key in zip(train.captions, train.identities, strict=True):
        left, right = divmod(key, 10)
        assert caps == (f"the photo on the left is {names[left]} and the photo on the right is {names[right]}",)
        assert train.candidates[key] == caps[0]
    assert 0.4 < ds.info["splits"]["train"]["different_class"] < 0.6  # p_diff = 0.5
    assert pc.build(None, seed=3, pairs=[200, 5, 5], p_diff=1.0).info["splits"]["train"]["different_class"] == 1.0
    assert pc.build(None, seed=3, pairs=[200, 5, 5], p_diff=0.0).info["splits"]["train"]["different_class"] == 0.0


def test_augmentation_runs_per_tile_before_stacking_and_only_on_train() -> None:
    ds = pc.build(None, seed=0, pairs=[20, 20, 20], augment=True)
    plain = pc.build(None, seed=0, pairs=[20, 20, 20], augment=False)
    composite = ds.splits["train"].load_image(4)
    raw = plain.splits["train"].load_image(4)
    assert not np.array_equal(composite, raw)
    loader = ds.splits["train"].load_image
    left, right = (torch.from_numpy(loader.images[t]).permute(2, 0, 1) for t in loader.pairs[4])
    rng = np.random.default_rng([0, 202, 4])
    expected = torch.cat(
        [loader._tile(loader.images[loader.pairs[4][0]], rng), loader._tile(loader.images[loader.pairs[4][1]], rng)], 2
    )
    assert np.array_equal(composite, expected.permute(1, 2, 0).numpy())  # each half is its own tile, transformed alone
    assert left.shape[-1] * 2 == composite.shape[1]
    assert np.array_equal(ds.splits["test"].load_image(4), plain.splits["test"].load_image(4))


def test_cifar100_pickles(tmp_path: Path) -> None:
    write_cifar100(tmp_path)
    ds = pc.build(None, seed=0, source="cifar100", root=str(tmp_path), pairs=[30, 10, 10])
    assert ds.class_names == tuple(f"class{c}" for c in range(5))
    assert len(ds.splits["train"].candidates) == 25 and ds.info["source"] == "cifar100"
    assert ds.splits["test"].load_image(0).shape == (32, 64, 3)
    assert ds.info["splits"]["train"]["tiles"] + ds.info["splits"]["val"]["tiles"] == 40  # val carved from train
    # root may also be the cifar-100-python folder itself
    assert pc.build(None, seed=0, source="cifar100", root=str(tmp_path / "cifar-100-python"), pairs=[5, 5, 5]).class_names


@pytest.mark.parametrize("damage", ["truncated", "cifar10", "short_names", "hostile"])
def test_bad_cifar_files_are_user_errors_naming_the_file(tmp_path: Path, damage: str) -> None:
    folder = write_cifar100(tmp_path, names=3 if damage == "short_names" else None)
    if damage == "truncated":
        data = (folder / "train").read_bytes()
        (folder / "train").write_bytes(data[: len(data) // 2])
    elif damage == "cifar10":
        (folder / "train").write_bytes(pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3]}, protocol=2))
    elif damage == "hostile":
        (folder / "meta").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    expected = {"truncated": "train", "cifar10": "labels", "short_names": "up to 4", "hostile": "not allowed"}[damage]
    with pytest.raises(UserError, match=expected) as info:
        pc.build(None, seed=0, source="cifar100", root=str(tmp_path), pairs=[5, 5, 5])
    assert str(folder) in str(info.value) or damage == "short_names"


def test_class_name_option_shorter_than_labels(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="option class_names lists 2 names but the labels go up to 9"):
        pc.build(None, seed=0, pairs=[5, 5, 5], class_names=["a", "b"])


def test_idx_files(tmp_path: Path) -> None:
    write_idx(tmp_path / "fm")
    ds = pc.build(None, seed=0, source="fashion_mnist", root=str(tmp_path / "fm"), pairs=[10, 5, 5])
    assert ds.splits["train"].load_image(0).shape == (28, 56, 3)
    assert "sneaker" in " ".join(ds.splits["train"].candidates)


@pytest.mark.parametrize("damage", ["count", "truncated", "magic"])
def test_bad_idx_files_are_user_errors(tmp_path: Path, damage: str) -> None:
    folder = write_idx(tmp_path / "fm", label_count=25 if damage == "count" else None)
    image_file = folder / "train-images-idx3-ubyte.gz"
    if damage == "truncated":
        image_file.write_bytes(gzip.compress(gzip.decompress(image_file.read_bytes())[:500]))
    elif damage == "magic":
        image_file.write_bytes(gzip.compress(b"\0\0\x09\x03" + gzip.decompress(image_file.read_bytes())[4:]))
    expected = {"count": "30 images but", "truncated": "truncated", "magic": "not an IDX file"}[damage]
    with pytest.raises(UserError, match=expected):
        pc.build(None, seed=0, source="fashion_mnist", root=str(folder), pairs=[5, 5, 5])


@pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed (.ci/run installs it)")
def test_real_fashion_mnist_from_the_debian_package() -> None:
    tiles = _tiles.load_idx("", "test")
    assert tiles.images.shape == (10_000, 28, 28, 3) and np.bincount(tiles.labels).tolist() == [1000] * 10


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("pairs = [10, 0, 5]", "pairs"),
        ("p_diff = 1.5", "p_diff"),
        ('source = "mnist"', "source"),
        ('source = "cifar100"', "root is not set"),
        ('template = "left {{left}}"', "template"),
    ],
)
def test_bad_dataset_options_refuse_the_suite(tmp_path: Path, options: str, message: str, host: PluginHost) -> None:
    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.format(dataset_options=options, train=""))
    with pytest.raises(SuiteError, match=message):
        load_suite(suite, host)


def test_k_not_positive_exits_2_before_anything_is_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from vlbench.cli import main

    suite = tmp_path / "s.toml"
    suite.write_text(SUITE.format(dataset_options="pairs = [16, 8, 8]", train="").replace("ks = [1, 10]", "ks = [0, 10]"))
    assert (
        main(["run", str(suite), "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), "--runs-dir", ""]) == 2
    )
    out = capsys.readouterr()
    assert "ks=[0, 10]" in out.out + out.err and "Traceback" not in out.err
    assert not (tmp_path / "r").exists()


SUITE = """
[suite]
name = "paired"
[train]
epochs = 1
batch_size = 8
eval_batch_size = 32
cost_batch_sizes = [1]
cost_budget_s = 0.05
{train}
[defaults.vision]
image_size = [32, 64]
[[tasks]]
name = "image_text_retrieval"
options = {{ ks = [1, 10], bootstrap = 0 }}
dataset = "paired_composites"
dataset_options = {{ {dataset_options} }}
[[vision]]
name = "small_vit"
[[text]]
name = "clip_text"
options = {{ width = 32, layers = 1, heads = 2, context_length = 24 }}
[[fusions]]
name = "contrastive"
options = {{ embed_dim = 16 }}
"""


# ---------------------------------------------------------------- flip safety


class LeftBrightEncoder(VisionEncoder):
    """Records whether every training image still has its bright half on the left."""

    seen_flipped: list[bool] = []

    def __init__(self, size):
        super().__init__()
        self.info = VisionInfo(token_dim=8, pooled_dim=8, input_size=tuple(size), mean=(0.5,) * 3, std=(0.5,) * 3)
        self.proj = torch.nn.Linear(3, 8)

    def forward(self, images):
        if self.training:
            width = images.shape[-1]
            left, right = images[..., : width // 2].mean((1, 2, 3)), images[..., width // 2 :].mean((1, 2, 3))
            LeftBrightEncoder.seen_flipped.extend((left < right).tolist())
        pooled = self.proj(images.mean((2, 3)))
        return EncoderOutput(pooled[:, None, :], pooled)


def _bright_left(cache_dir, seed, **options):
    """Composites whose left tile is bright and right tile dark, so a flip is visible."""
    ds = pc.build(cache_dir, seed, **options)
    splits = {}
    for name, split in ds.splits.items():

        def load(i, _inner=split.load_image):
            image = _inner(i).copy()
            image[:, : image.shape[1] // 2] = 255
            image[:, image.shape[1] // 2 :] = 0
            return image

        splits[name] = type(split)(**{**split.__dict__, "load_image": load})
    return type(ds)(name=ds.name, splits=splits, class_names=ds.class_names, info=ds.info)


class FlipProbe:
    def __init__(self, safe: bool):
        self.safe = safe

    @hookimpl
    def vlbench_register_vision_encoders(self, register):
        register(
            VisionEncoderSpec(
                name="left_bright",
                factory=lambda image_size, pretrained, weights: LeftBrightEncoder(image_size),
                default_image_size=(32, 64),
            )
        )

    @hookimpl
    def vlbench_register_datasets(self, register):
        register(
            DatasetSpec(
                name="bright_left",
                factory=_bright_left,
                options=dict(pc.DEFAULTS),
                provides=frozenset({"image", "captions", "identity"}),
                hflip_safe=self.safe,
            )
        )


@pytest.mark.parametrize("safe", [False, True])
def test_a_flip_unsafe_dataset_never_receives_flipped_images(tmp_path: Path, safe: bool) -> None:
    suite_file = tmp_path / "s.toml"
    suite_file.write_text(
        SUITE.replace("paired_composites", "bright_left")
        .replace('name = "small_vit"', 'name = "left_bright"')
        .format(dataset_options="pairs = [48, 8, 8], augment = false", train="max_steps_per_epoch = 6")
    )
    host = PluginHost([("probe", FlipProbe(safe))])
    [run] = load_suite(suite_file, host).runs
    assert run.train["hflip"] is safe  # the default flip resolves off for an unsafe dataset
    # Even a RunSpec that asks for flips (built by hand, past validation) gets none.
    forced = type(run)(**{**run.__dict__, "train": {**run.train, "hflip": True}})
    LeftBrightEncoder.seen_flipped = []
    content = engine.execute(forced, host, tmp_path / "cache", torch.device("cpu"), engine.SilentReporter())
    assert len(LeftBrightEncoder.seen_flipped) >= 40
    assert any(LeftBrightEncoder.seen_flipped) is safe  # the probe sees flips exactly when they are allowed
    assert content["training"]["hflip"] is safe

    suite_file.write_text(suite_file.read_text().replace("max_steps_per_epoch = 6", "hflip = true"))
    if safe:
        load_suite(suite_file, host)
    else:
        with pytest.raises(SuiteError, match="train.hflip: dataset 'bright_left' declares that a horizontal flip"):
            load_suite(suite_file, host)


def test_the_conformance_kit_accepts_paired_composites(tmp_path: Path, host: PluginHost) -> None:
    from vlbench.testing.contracts import check_dataset

    check_dataset(host.get("dataset", "paired_composites"), tmp_path, pairs=[20, 10, 10])


@pytest.mark.parametrize("damage", ["truncated_cifar", "cifar10_pickle", "idx_counts", "short_class_names", "missing_image"])
def test_bad_data_files_exit_2_from_the_cli_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: str
) -> None:
    """Each damaged input stops `vlbench run` with exit 2, a message naming the file (or option),
    no traceback and no results folder: the dataset is built before any run starts."""
    from vlbench.cli import main

    options, expected = "", ""
    if damage in ("truncated_cifar", "cifar10_pickle"):
        folder = write_cifar100(tmp_path)
        train = folder / "train"
        if damage == "truncated_cifar":
            train.write_bytes(train.read_bytes()[:1000])
        else:
            train.write_bytes(pickle.dumps({"data": np.zeros((4, 3072), np.uint8), "labels": [0, 1, 2, 3]}, protocol=2))
        options, expected = f'source = "cifar100", root = "{tmp_path}", pairs = [8, 4, 4]', str(train)
    elif damage == "idx_counts":
        folder = write_idx(tmp_path / "fm", label_count=25)
        options, expected = f'source = "fashion_mnist", root = "{folder}", pairs = [8, 4, 4]', "30 images but"
    elif damage == "short_class_names":
        options, expected = 'pairs = [8, 4, 4], class_names = ["a", "b"]', "class_names lists 2 names"
    suite_text = SUITE.format(dataset_options=options, train="")
    if damage == "missing_image":
        file = write_karpathy(tmp_path)
        (tmp_path / "flickr30k-images" / "1001.jpg").unlink()
        suite_text = suite_text.replace('dataset = "paired_composites"', 'dataset = "karpathy_json"').replace(
            "dataset_options = {  }", f'dataset_options = {{ root = "{tmp_path}" }}'
        )
        expected = str(file)
    suite = tmp_path / "s.toml"
    suite.write_text(suite_text)
    status = main(["run", str(suite), "--results-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "c"), "--runs-dir", ""])
    out = capsys.readouterr()
    assert status == 2, out
    assert expected in out.out + out.err and "Traceback" not in out.out + out.err
    assert not (tmp_path / "r").exists()
