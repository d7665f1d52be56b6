"""Dataset plugins: the IRRA-format person-search loaders on fixtures written in the exact
public formats, and the synthetic pedestrian generator (determinism, splits, hard negatives,
cache). Factories are called directly, with specs collected through a list-append register."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from PIL import Image

from vlbench.errors import UserError
from vlbench.plugins.datasets import pedes_json
from vlbench.plugins.datasets import synthetic_pedestrians as synth
from vlbench.types import Dataset, DatasetSpec


def specs(module: ModuleType) -> dict[str, DatasetSpec]:
    found: list[DatasetSpec] = []
    module.vlbench_register_datasets(register=found.append)
    return {s.name: s for s in found}


def build(module: ModuleType, name: str, cache_dir: Path, seed: int = 0, **options: Any) -> Dataset:
    return specs(module)[name].factory(cache_dir=cache_dir, seed=seed, **options)


# ---------------------------------------------------------------- IRRA-format fixtures


def write_images(images_dir: Path, paths: list[str]) -> None:
    for k, rel in enumerate(paths):
        path = images_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        # Grey-level images (mode L) check the conversion to RGB too.
        mode = "L" if k % 3 == 0 else "RGB"
        Image.new(mode, (4, 8), color=(k * 20) % 256 if mode == "L" else (k * 20 % 256, 40, 90)).save(path)


def write_dataset(root: Path, folder: str, file_name: str, records: list[dict[str, Any]], path_key: str) -> Path:
    (root / folder).mkdir(parents=True, exist_ok=True)
    write_images(root / folder / "imgs", [r[path_key] for r in records])
    file = root / folder / file_name
    file.write_text(json.dumps(records))
    return file


def cuhk_records() -> list[dict[str, Any]]:
    """reid_raw.json: {"split", "captions", "file_path", "processed_tokens", "id"}, ids from 1."""

    def rec(split: str, pid: int, path: str, n_captions: int) -> dict[str, Any]:
        captions = [f"A person number {pid}, caption {c}." for c in range(n_captions)]
        return {
            "split": split,
            "captions": captions,
            "file_path": path,
            "processed_tokens": [c.lower().rstrip(".").split() for c in captions],
            "id": pid,
        }

    return [
        rec("train", 1, "cam_a/001_1.jpg", 2),
        rec("train", 1, "cam_b/001_2.jpg", 2),
        rec("train", 2, "cam_a/002_1.jpg", 2),
        rec("train", 3, "CUHK01/0003001.png", 3),
        rec("val", 4, "cam_a/004_1.jpg", 2),
        rec("val", 5, "test_query/p5_s1.jpg", 2),
        rec("test", 6, "cam_a/006_1.jpg", 2),
        rec("test", 6, "cam_b/006_2.jpg", 1),
        rec("test", 7, "Market/0007_c1.jpg", 2),
    ]


def icfg_records() -> list[dict[str, Any]]:
    """ICFG-PEDES.json: {"split", "captions", "file_path", "id"}; train and test only."""
    records = [
        {
            "split": "train",
            "captions": [f"train person {pid} view {v}."],
            "file_path": f"train/{pid:04d}/{pid:04d}_{v}.jpg",
            "id": pid,
        }
        for pid in range(10)
        for v in range(2)
    ]
    records += [
        {
            "split": "test",
            "captions": [f"test person {pid}.", "another caption."],
            "file_path": f"test/{pid:04d}/{pid:04d}_0.jpg",
            "id": pid,
        }
        for pid in (3000, 3001, 3002)
    ]
    return records


def rstp_records() -> list[dict[str, Any]]:
    """data_captions.json: {"id", "img_path", "captions", "split"}; img_path, not file_path."""

    def rec(split: str, pid: int, view: int) -> dict[str, Any]:
        return {
            "id": pid,
            "img_path": f"{pid:04d}_c{view}_{view:04d}.jpg",
            "captions": [f"person {pid} seen {view}.", f"second caption {pid}."],
            "split": split,
        }

    return [
        rec("train", 0, 1),
        rec("train", 0, 2),
        rec("train", 1, 1),
        rec("val", 7, 1),
        rec("val", 7, 2),
        rec("test", 9, 1),
        rec("test", 9, 3),
        rec("test", 10, 1),
    ]


def test_three_specs_registered() -> None:
    found = specs(pedes_json)
    assert set(found) == {"cuhk_pedes", "icfg_pedes", "rstpreid"}
    for spec in found.values():
        assert spec.provides == frozenset({"image", "captions", "identity"})
        assert not spec.synthetic
        assert spec.options == {"root": "", "val_fraction": 0.1}


def test_cuhk_pedes_irra_semantics(tmp_path: Path) -> None:
    file = write_dataset(tmp_path, "CUHK-PEDES", "reid_raw.json", cuhk_records(), "file_path")
    ds = build(pedes_json, "cuhk_pedes", tmp_path / "cache", root=str(tmp_path))
    train, val, test = (ds.splits[s] for s in ("train", "val", "test"))
    assert train.identities == (0, 0, 1, 2)  # IRRA: id - 1 for CUHK-PEDES train
    assert val.identities == (4, 5) and test.identities == (6, 6, 7)  # raw ids in eval splits
    # Every eval image is in the gallery, every caption a query.
    assert len(test) == 3 and sum(len(c) for c in test.captions) == 5
    assert test.ids == ("cam_a/006_1.jpg", "cam_b/006_2.jpg", "Market/0007_c1.jpg")
    assert ds.info["splits"]["test"] == {"n_ids": 2, "n_images": 3, "n_captions": 5}
    assert ds.info["splits"]["train"] == {"n_ids": 3, "n_images": 4, "n_captions": 9}
    assert ds.info["annotation_sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    assert ds.info["val"]["source"] == "file"
    image = train.load_image(0)  # a mode-L file comes back as RGB
    assert image.shape == (8, 4, 3) and image.dtype == np.uint8
    assert pickle.loads(pickle.dumps(train.load_image))(3).shape == (8, 4, 3)


@pytest.mark.parametrize("file_name", ["ICFG-PEDES.json", "ICFG_PEDES.json"])
def test_icfg_pedes_both_file_names_and_carved_val(tmp_path: Path, file_name: str) -> None:
    write_dataset(tmp_path, "ICFG-PEDES", file_name, icfg_records(), "file_path")
    ds = build(pedes_json, "icfg_pedes", tmp_path / "cache", seed=3, root=str(tmp_path), val_fraction=0.2)
    train, val, test = (ds.splits[s] for s in ("train", "val", "test"))
    assert ds.info["annotation_file"].endswith(file_name)
    assert ds.info["val"] == {"source": "carved from train identities", "fraction": 0.2, "seed": 3, "n_ids": 2}
    val_people = {path.split("/")[1] for path in val.ids}
    train_people = {path.split("/")[1] for path in train.ids}
    assert len(val_people) == 2 and not val_people & train_people  # whole identities held out
    assert len(train) + len(val) == 20 and len(test) == 3
    assert sorted(set(train.identities)) == list(range(8))  # renumbered contiguous
    assert "renumbered" in ds.info["train_pids"]
    assert set(test.identities) == {3000, 3001, 3002}
    again = build(pedes_json, "icfg_pedes", tmp_path / "cache", seed=3, root=str(tmp_path), val_fraction=0.2)
    assert again.splits["val"].ids == val.ids  # deterministic by seed
    carved = {build(pedes_json, "icfg_pedes", tmp_path, seed=s, root=str(tmp_path)).splits["val"].ids for s in range(6)}
    assert len(carved) > 1  # and the seed matters


def test_rstpreid_img_path(tmp_path: Path) -> None:
    write_dataset(tmp_path, "RSTPReid", "data_captions.json", rstp_records(), "img_path")
    ds = build(pedes_json, "rstpreid", tmp_path / "cache", root=str(tmp_path))
    assert ds.splits["train"].identities == (0, 0, 1)  # no offset outside CUHK-PEDES
    assert ds.splits["val"].identities == (7, 7)
    assert ds.splits["test"].identities == (9, 9, 10)
    assert ds.info["splits"]["test"] == {"n_ids": 2, "n_images": 3, "n_captions": 6}
    assert ds.splits["test"].load_image(2).shape == (8, 4, 3)


def test_missing_root_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"root.*CUHK-PEDES"):
        build(pedes_json, "cuhk_pedes", tmp_path)
    absent = tmp_path / "nowhere"
    with pytest.raises(UserError, match=str(absent)):
        build(pedes_json, "cuhk_pedes", tmp_path, root=str(absent))


def test_missing_file_names_every_expected_path(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        build(pedes_json, "icfg_pedes", tmp_path, root=str(tmp_path))
    for name in ("ICFG-PEDES.json", "ICFG_PEDES.json"):
        assert str(tmp_path / "ICFG-PEDES" / name) in str(err.value)
    with pytest.raises(UserError, match=str(tmp_path / "RSTPReid" / "data_captions.json")):
        build(pedes_json, "rstpreid", tmp_path, root=str(tmp_path))


@pytest.mark.parametrize(
    ("key", "bad", "expected"),
    [
        ("captions", None, "missing"),
        ("id", "5", "integer"),
        ("captions", "one caption", "list of strings"),
        ("file_path", None, "missing"),
    ],
)
def test_malformed_record_names_file_index_and_key(tmp_path: Path, key: str, bad: Any, expected: str) -> None:
    records = cuhk_records()
    if bad is None:
        del records[2][key]
    else:
        records[2][key] = bad
    file = write_dataset(tmp_path, "CUHK-PEDES", "reid_raw.json", cuhk_records(), "file_path")
    file.write_text(json.dumps(records))
    with pytest.raises(UserError) as err:
        build(pedes_json, "cuhk_pedes", tmp_path, root=str(tmp_path))
    message = str(err.value)
    assert str(file) in message and "record 2" in message and repr(key) in message and expected in message


def test_missing_image_is_named(tmp_path: Path) -> None:
    write_dataset(tmp_path, "RSTPReid", "data_captions.json", rstp_records(), "img_path")
    gone = tmp_path / "RSTPReid" / "imgs" / rstp_records()[3]["img_path"]
    gone.unlink()
    with pytest.raises(UserError, match=str(gone)):
        build(pedes_json, "rstpreid", tmp_path, root=str(tmp_path))


# ---------------------------------------------------------------- synthetic pedestrians

SMALL = {"identities": [12, 6, 6], "views_per_identity": 3, "image_size": [64, 32], "hard_negative_fraction": 0.5}


def all_images(ds: Dataset) -> np.ndarray:
    return np.stack([split.load_image(i) for split in ds.splits.values() for i in range(len(split))])


def attributes(ds: Dataset) -> list[dict[str, str]]:
    return json.loads((Path(ds.info["cache"]["path"]) / "meta.json").read_text())["identity_attributes"]


def test_synthetic_spec() -> None:
    spec = specs(synth)["synthetic_pedestrians"]
    assert spec.synthetic and spec.provides == frozenset({"image", "captions", "identity"})
    assert spec.options == {
        "identities": [240, 60, 60],
        "views_per_identity": 4,
        "image_size": [128, 64],
        "hard_negative_fraction": 0.3,
    }


def test_synthetic_default_dataset(tmp_path: Path) -> None:
    started = time.perf_counter()
    ds = build(synth, "synthetic_pedestrians", tmp_path)
    seconds = time.perf_counter() - started
    n_images = sum(len(s) for s in ds.splits.values())
    print(f"synthetic_pedestrians defaults: {n_images} images in {seconds:.2f} s ({n_images / seconds:.0f} img/s)")
    assert n_images == 4 * (240 + 60 + 60)
    test = ds.splits["test"]
    assert test.load_image(0).shape == (128, 64, 3) and test.load_image(0).dtype == np.uint8
    assert ds.info["splits"]["test"] == {"n_identities": 60, "n_images": 240, "n_captions": 480, "n_hard_negative_identities": 18}
    assert set(ds.info["attribute_vocabulary"]["upper"]) >= {"t-shirt", "jacket", "coat"}
    assert len(ds.info["checksum"]["sha256"]) == 64


def test_synthetic_deterministic_by_seed(tmp_path: Path) -> None:
    a = build(synth, "synthetic_pedestrians", tmp_path / "a", seed=7, **SMALL)
    b = build(synth, "synthetic_pedestrians", tmp_path / "b", seed=7, **SMALL)
    c = build(synth, "synthetic_pedestrians", tmp_path / "c", seed=8, **SMALL)
    assert np.array_equal(all_images(a), all_images(b))
    assert all(a.splits[s].captions == b.splits[s].captions for s in a.splits)
    assert a.info["checksum"] == b.info["checksum"]
    assert not np.array_equal(all_images(a), all_images(c))
    assert a.info["checksum"] != c.info["checksum"]
    assert a.splits["train"].captions != c.splits["train"].captions


def test_synthetic_splits_captions_and_hard_negatives(tmp_path: Path) -> None:
    ds = build(synth, "synthetic_pedestrians", tmp_path, seed=1, **SMALL)
    people = {name: set(split.identities) for name, split in ds.splits.items()}
    assert [len(people[s]) for s in ("train", "val", "test")] == [12, 6, 6]
    assert not (people["train"] & people["val"] or people["train"] & people["test"] or people["val"] & people["test"])
    assert len(set().union(*(s.ids for s in ds.splits.values()))) == 3 * (12 + 6 + 6)

    attrs = attributes(ds)
    for split in ds.splits.values():
        assert all(len(c) == 2 and c[0] != c[1] and all(c) for c in split.captions)
        for pid, captions in zip(split.identities, split.captions, strict=True):
            # Every caption names the upper garment's colour (under some synonym).
            words = {"grey": ("grey", "gray"), "purple": ("purple", "violet")}.get(attrs[pid]["upper_color"])
            assert all(any(w in c for w in (words or (attrs[pid]["upper_color"],))) for c in captions)

    hard = ds.info["hard_negatives"]
    assert len(hard) == 6 + 3 + 3  # half of each split, rounded down
    for copy, source, key in hard:
        assert any(copy in p and source in p for p in people.values())  # same split
        differing = [k for k in attrs[copy] if attrs[copy][k] != attrs[source][k]]
        assert differing == [key]
    signatures = {tuple(sorted(a.items())) for a in attrs}
    assert len(signatures) == len(attrs)  # no two identities look alike


def test_synthetic_cache_reused_and_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = build(synth, "synthetic_pedestrians", tmp_path, seed=2, **SMALL)
    cache = Path(first.info["cache"]["path"])
    assert cache.parent == tmp_path and not first.info["cache"]["reused"]
    stamps = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}

    def must_not_run(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("regenerated a cached dataset")

    monkeypatch.setattr(synth, "_generate", must_not_run)
    second = build(synth, "synthetic_pedestrians", tmp_path, seed=2, **SMALL)
    assert second.info["cache"]["reused"] and second.info["checksum"] == first.info["checksum"]
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == stamps
    assert np.array_equal(all_images(first), all_images(second))

    def interrupted(out: Path, seed: int, opts: dict[str, Any]) -> None:
        (out / "train.npy").write_bytes(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(synth, "_generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build(synth, "synthetic_pedestrians", tmp_path, seed=3, **SMALL)
    assert sorted(os.listdir(tmp_path)) == [cache.name]  # neither a half cache nor a temp dir

    (cache / "val.npy").unlink()
    with pytest.raises(UserError, match=r"lacks val\.npy"):
        build(synth, "synthetic_pedestrians", tmp_path, seed=2, **SMALL)


def test_synthetic_bad_options(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="hard_negative_fraction"):
        build(synth, "synthetic_pedestrians", tmp_path, hard_negative_fraction=0.8)
    with pytest.raises(UserError, match="identities"):
        build(synth, "synthetic_pedestrians", tmp_path, identities=[10, 10])
    with pytest.raises(UserError, match="unknown option"):
        build(synth, "synthetic_pedestrians", tmp_path, views=3)


def test_synthetic_speed_sanity(tmp_path: Path) -> None:
    options = {"identities": [100, 15, 10], "views_per_identity": 4}  # 500 images, default size
    started = time.perf_counter()
    ds = build(synth, "synthetic_pedestrians", tmp_path, **options)
    seconds = time.perf_counter() - started
    print(f"synthetic_pedestrians: 500 images in {seconds:.2f} s ({500 / seconds:.0f} img/s)")
    assert sum(len(s) for s in ds.splits.values()) == 500
