"""Plugins from a third party's side: the example distribution and one scaffolded package per
kind are built and installed (offline, no build isolation) into a folder on sys.path, then
listed, run, tested with the conformance kit and checked with check-plugin."""

from __future__ import annotations

import argparse
import fcntl
import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

import vlbench
from vlbench import cli, hookimpl
from vlbench.checkplugin import add_parser as add_check_parser
from vlbench.checkplugin import check_distribution
from vlbench.errors import UserError
from vlbench.manager import PluginHost
from vlbench.results import problems, read_record
from vlbench.scaffold import add_parser as add_scaffold_parser
from vlbench.scaffold import write_plugin
from vlbench.testing import mocks
from vlbench.testing.contracts import check_dataset, check_fusion, check_task, check_text_encoder, check_vision_encoder
from vlbench.types import EncoderOutput, TextEncoderSpec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "vlbench-example-plugin"
SCAFFOLDS = {"encoder": "vlbench-kit-encoder", "task": "vlbench-kit-task", "fusion": "vlbench-kit-fusion"}
MODULE_PREFIXES = ("vlbench_example_plugin", "vlbench_kit_", "thirdparty_")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def forget_modules() -> None:
    for name in [n for n in sys.modules if n.startswith(MODULE_PREFIXES)]:
        del sys.modules[name]


def build_site(work: Path) -> Path:
    """The example and a scaffold of each kind, pip-installed into ``work/site``."""
    # Built from a copy: an in-tree build would leave build/ and *.egg-info in the repository.
    sources = [shutil.copytree(EXAMPLE, work / EXAMPLE.name, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))]
    sources += [write_plugin(dist, kind, work) for kind, dist in SCAFFOLDS.items()]
    target = work / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            *map(str, sources),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return target


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """``build_site`` once per test session, put on sys.path for this module's tests."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the session's xdist workers: the first one builds, the others wait
    work = root / "third_party"
    with open(root / "third_party.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (work / "built").exists():
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            build_site(work)
            (work / "built").touch()
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(work / "site"))
        yield work / "site"
    forget_modules()


@pytest.fixture
def kit_host(site):
    return PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks)])


def make_distribution(root: Path, dist: str, version: str, module: str, source: str) -> None:
    """An installed distribution as pip leaves it: dist-info with an entry point, and a module."""
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[vlbench]\n{module} = {module}\n")
    (root / f"{module}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def fake_site(site, tmp_path, monkeypatch):
    """A second folder on sys.path for hand-made distributions, cleaned up after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    forget_modules()


def run_command(add_parser, argv: list[str]) -> tuple[int, str]:
    """One of the new sub-commands through its own parser, with cli.main's handling of UserError."""
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(argv)
    console = Console(width=250, record=True)
    try:
        status = args.func(args, console)
    except UserError as exc:
        console.print(f"error: {exc}")
        status = 2
    return status, console.export_text()


# ---------------------------------------------------------------- the example distribution


def test_vlbench_plugins_lists_the_example_with_distribution_and_version(site, capsys):
    assert cli.main(["plugins"]) == 0
    rows = {
        line.split()[0]: line.split()
        for line in capsys.readouterr().out.splitlines()
        if line.startswith("  ") and not line.startswith("   ")
    }
    for name, plugin in (("tiny_cnn", "vlbench_example_plugin.encoder"), ("caption_choice", "vlbench_example_plugin.task")):
        assert rows[name][1:] == [plugin, "vlbench-example-plugin", "0.1.0"], rows[name]
    assert rows["resnet50"][1:] == ["vision.resnet", "vlbench", vlbench.__version__]


def test_example_suite_runs_to_an_ok_record_naming_both_plugins(site, tmp_path, capsys):
    results = tmp_path / "results"
    suite = EXAMPLE / "suites" / "example.toml"
    assert cli.main(["run", str(suite), "--results-dir", str(results), "--cache-dir", str(tmp_path / "cache")]) == 0, (
        capsys.readouterr()
    )
    (path,) = (results / "example").glob("*.json")
    record = read_record(path)
    assert record["status"] == "ok"
    for kind, name, plugin in (
        ("vision", "tiny_cnn", "vlbench_example_plugin.encoder"),
        ("task", "caption_choice", "vlbench_example_plugin.task"),
    ):
        component = record["components"][kind]
        assert (component["name"], component["plugin"], component["distribution"], component["version"]) == (
            name,
            plugin,
            "vlbench-example-plugin",
            "0.1.0",
        )
    test = record["metrics"]["splits"]["test"]
    assert test["main"] == "accuracy" and test["chance"]["accuracy"] == 20.0 and 0 <= test["values"]["accuracy"] <= 100


def test_encoder_output_breaking_the_contract_is_caught_on_the_first_batch_naming_the_plugin(
    site, kit_host, tmp_path, monkeypatch
):
    from vlbench_example_plugin.encoder import TinyCNN

    def wrong_width(self, images):
        tokens = self.body(images).flatten(2).transpose(1, 2)
        return EncoderOutput(tokens=tokens, pooled=tokens.mean(1)[:, :-1])

    monkeypatch.setattr(TinyCNN, "forward", wrong_width)
    record = mocks.tiny_run(kit_host, tmp_path, vision="tiny_cnn")
    assert record["status"] == "error" and record["error"]["type"] == "PluginError"
    message = record["error"]["message"]
    assert "'tiny_cnn'" in message and "vlbench_example_plugin.encoder" in message and "vlbench-example-plugin 0.1.0" in message
    assert record["training"] == {}  # stopped before any training step


def test_block_and_load_variables_take_the_example_distribution_and_plugin_names(site, monkeypatch):
    monkeypatch.setenv("VLBENCH_BLOCK_PLUGINS", "vlbench-example-plugin")
    host = PluginHost()
    assert "tiny_cnn" not in host.specs("vision") and "caption_choice" not in host.specs("task")
    monkeypatch.delenv("VLBENCH_BLOCK_PLUGINS")
    monkeypatch.setenv("VLBENCH_LOAD_PLUGINS", "vlbench_example_plugin.encoder")
    host = PluginHost()
    assert list(host.specs("vision")) == ["tiny_cnn"] and not host.specs("task")


def test_a_name_taken_by_another_distribution_is_refused_naming_both_owners(fake_site):
    make_distribution(
        fake_site,
        "vlbench-copycat",
        "2.0",
        "thirdparty_copycat",
        """
        from vlbench import hookimpl
        from vlbench.types import VisionEncoderSpec

        @hookimpl
        def vlbench_register_vision_encoders(register):
            register(VisionEncoderSpec(name="tiny_cnn", factory=lambda **kw: None))
    """,
    )
    host = PluginHost()
    with pytest.raises(UserError) as err:
        host.get("vision", "tiny_cnn")
    for owner in ("vlbench_example_plugin.encoder", "vlbench-example-plugin 0.1.0", "thirdparty_copycat", "vlbench-copycat 2.0"):
        assert owner in str(err.value)
    results = check_distribution(PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks)]), "vlbench-example-plugin")
    (conflict,) = [r for r in results if r.check == "unique name"]
    assert conflict.status == "fail" and "vlbench-copycat" in conflict.reason


# ---------------------------------------------------------------- check-plugin and the scaffold


@pytest.mark.parametrize("dist", ["vlbench-example-plugin", *SCAFFOLDS.values()])
def test_check_plugin_passes_the_example_and_every_scaffold(kit_host, dist):
    results = check_distribution(kit_host, dist)
    assert [r for r in results if r.status != "pass"] == []
    assert {r.check for r in results} >= {"contract"} and any(r.check.startswith("end-to-end") for r in results)


def test_check_plugin_command_prints_the_table_and_exits_0_1_or_2(fake_site):
    make_distribution(
        fake_site,
        "vlbench-broken-kit",
        "0.3",
        "thirdparty_broken",
        """
        import torch
        from vlbench import hookimpl
        from vlbench.types import EncoderOutput, VisionEncoder, VisionEncoderSpec, VisionInfo


        class Narrow(VisionEncoder):
            def __init__(self, image_size, pretrained=False, weights=None):
                super().__init__()
                self.info = VisionInfo(token_dim=4, pooled_dim=4, input_size=tuple(image_size), mean=(0.5,) * 3, std=(0.5,) * 3)
                self.scale = torch.nn.Parameter(torch.ones(1))

            def forward(self, images):
                features = images.mean((2, 3)).repeat(1, 2)[:, :4] * self.scale
                return EncoderOutput(features[:, None, :], features[:, :3])  # pooled 3 wide, info says 4


        @hookimpl
        def vlbench_register_vision_encoders(register):
            register(VisionEncoderSpec(name="narrow", factory=Narrow, default_image_size=(32, 32)))


        @hookimpl
        def vlbench_run_finished(record):
            pass
    """,
    )
    status, out = run_command(add_check_parser, ["check-plugin", "vlbench-broken-kit"])
    assert status == 1, out
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines() if line.count("│") == 6]
    by_check = {(row[1], row[2]): row for row in rows if row[0]}
    assert by_check[("narrow", "contract")][3] == "fail" and "pooled" in " ".join(r[4] for r in rows)
    assert by_check[("narrow", "end-to-end")][3] == "fail"
    assert by_check[("thirdparty_broken", "vlbench_run_finished")][3] == "skip"
    assert "0 passed, 2 failed, 1 skipped" in out

    status, out = run_command(add_check_parser, ["check-plugin", "vlbench-example-plugin"])
    assert status == 0 and "4 passed, 0 failed, 0 skipped" in out
    status, out = run_command(add_check_parser, ["check-plugin", "vlbench-exampel-plugin"])
    assert status == 2 and "Did you mean 'vlbench-example-plugin'" in out


def test_contract_classes_pass_in_the_authors_own_test_suites(site, tmp_path):
    """The example's and the scaffolds' tests/ folders, run by pytest with vlbench's pytest plugin as
    their authors would, plus the two contract classes those do not use, over the kit's own mocks."""
    (tmp_path / "test_kit_contracts.py").write_text(
        textwrap.dedent("""
        from vlbench.testing import DatasetContract, TextEncoderContract

        class TestMockText(TextEncoderContract):
            spec_name = "mock_text"
            options = {"dim": 8}

        class TestMockDataset(DatasetContract):
            spec_name = "mock_dataset"
            options = {"images_per_split": 30}
    """)
    )
    folders = [site.parent / EXAMPLE.name / "tests", *(site.parent / dist / "tests" for dist in SCAFFOLDS.values()), tmp_path]
    # Autoload off and the plugin named: the same command whether or not vlbench's pytest11 entry point is installed yet.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
        "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "vlbench.testing.plugin", "-p", "no:cacheprovider", *map(str, folders)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "21 passed" in proc.stdout


def test_new_plugin_writes_the_package_and_refuses_to_overwrite(tmp_path):
    status, out = run_command(add_scaffold_parser, ["new-plugin", "vlbench-acme", "--kind", "fusion", "--dir", str(tmp_path)])
    assert status == 0, out
    root = tmp_path / "vlbench-acme"
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["vlbench"] == {"vlbench_acme.fusion": "vlbench_acme.fusion"}
    assert (root / "src" / "vlbench_acme" / "fusion.py").is_file() and (root / "README.md").is_file()
    assert "FusionContract" in (root / "tests" / "test_vlbench_acme.py").read_text()
    status, out = run_command(add_scaffold_parser, ["new-plugin", "vlbench-acme", "--dir", str(tmp_path)])
    assert status == 2 and "already exists" in out
    status, out = run_command(add_scaffold_parser, ["new-plugin", "bad name", "--dir", str(tmp_path)])
    assert status == 2


# ---------------------------------------------------------------- the kit itself


def test_the_kits_mocks_pass_their_own_contracts(tmp_path):
    host = PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks)], load_entry_points=False)
    check_vision_encoder(host.get("vision", "mock_vision"))
    check_text_encoder(host.get("text", "mock_text"))
    check_fusion(host.get("fusion", "mock_fusion"))
    check_task(host.get("task", "mock_retrieval"))
    check_task(host.get("task", "mock_classification"))
    check_dataset(host.get("dataset", "mock_dataset"), tmp_path)
    split = mocks.coded_split()
    assert mocks.oracle_model(split).classify(torch.zeros(1, 3, 8, 8), None).shape == (1, mocks.CODED_CLASSES)


def test_tiny_run_of_a_classification_task_and_an_in_process_text_encoder(tmp_path):
    class Plugin:
        """A third-party text encoder handed over in-process, as a test would."""

        @hookimpl
        def vlbench_register_text_encoders(self, register):
            register(TextEncoderSpec(name="wide_text", factory=lambda **kw: mocks.MockTextEncoder(dim=24, **kw)))

    host = PluginHost(extra_plugins=[(mocks.PLUGIN_NAME, mocks), ("wide", Plugin())], load_entry_points=False)
    record = mocks.tiny_run(host, tmp_path, text="wide_text", task="mock_classification")
    assert record["status"] == "ok", mocks.describe_failure(record)
    assert record["components"]["text"]["plugin"] == "wide" and record["metrics"]["main"] == "top1"
    assert problems(json.loads(json.dumps(record))) == []  # plain JSON that follows the record schema


def test_cli_offers_the_new_commands():
    """Fails until core/cli.py's build_parser calls checkplugin.add_parser and scaffold.add_parser."""
    parser = cli.build_parser()
    assert parser.parse_args(["check-plugin", "x"]).func.__name__ == "cmd_check_plugin"
    assert parser.parse_args(["new-plugin", "x"]).func.__name__ == "cmd_new_plugin"


def test_the_pytest_plugin_is_declared_in_pyproject():
    """Fails until pyproject.toml declares the pytest11 entry point (and ships vlbench.testing)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["pytest11"] == {"vlbench.testing.plugin": "vlbench.testing.plugin"}
    from setuptools import find_packages

    assert "testing" in find_packages(str(ROOT / "core"))  # setup.py ships each package under core/ as vlbench.<name>


IMAGE_MATCH = """
    import json
    from pathlib import Path

    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from vlbench import hookimpl
    from vlbench.errors import UserError
    from vlbench.types import Dataset, DatasetSpec, Metrics, Split, TaskSpec, UnitScores


    class OwnImage:
        \"\"\"A caption matches only its own image (no identities): R@1 over the split.\"\"\"

        objective = "embedding"
        required_fields = frozenset({"image", "captions"})
        main_metric = "R1"
        match_key = "image"  # the conformance kit's oracle matches on images, not identities

        def num_classes(self, dataset):
            return None

        def loss(self, model, batch):
            logits = model.logit_scale() * model.encode_image(batch.images) @ model.encode_text(batch.text).t()
            target = torch.arange(len(logits))
            return (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2

        def evaluate(self, model, split, loader):
            with torch.inference_mode():
                images = torch.cat([model.encode_image(x).float() for _, x in loader.images(split)])
                texts = torch.cat([model.encode_text(t).float() for _, t in loader.texts([c[0] for c in split.captions])])
            hits = 100.0 * ((texts @ images.t()).argmax(1) == torch.arange(len(split))).double().numpy()
            return Metrics(values={"R1": float(hits.mean())}, main="R1", chance={"R1": 100.0 / len(split)}, units={"R1": "%"},
                           per_unit=UnitScores(unit="image", scores={"R1": (np.arange(len(split)), hits)}))


    def pairs(cache_dir, seed, root=""):
        if not root:
            raise UserError("dataset 'folder_pairs': set the option root to a folder holding pairs.json and its PNG files.")
        rows = json.loads((Path(root) / "pairs.json").read_text())
        cut = {"train": rows[:24], "val": rows[24:32], "test": rows[32:]}
        load = lambda part: lambda i: np.array(Image.open(Path(root) / part[i]["file"]).convert("RGB"))  # np.array: writable
        return Dataset(name="folder_pairs", splits={
            name: Split(name=name, ids=[r["file"] for r in part], load_image=load(part), captions=[(r["caption"],) for r in part])
            for name, part in cut.items()})


    @hookimpl
    def vlbench_register_tasks(register):
        register(TaskSpec(name="own_image", factory=OwnImage, objective="embedding", required_fields=OwnImage.required_fields))


    @hookimpl
    def vlbench_register_datasets(register):
        register(DatasetSpec(name="folder_pairs", factory=pairs, options={"root": ""}, provides=frozenset({"image", "captions"}),
                             content_files=lambda root="": [Path(root) / "pairs.json", *sorted(Path(root).glob("*.png"))]))
"""


def test_a_task_matching_on_images_and_a_loader_needing_root_pass_check_plugin(fake_site, tmp_path):
    """The kit's oracle follows the task's match_key; the loader is a skip ("needs configuration")
    until --option root=... is given, then passes its contract and an end-to-end run."""
    from PIL import Image

    make_distribution(fake_site, "vlbench-image-match", "1.0", "thirdparty_image_match", IMAGE_MATCH)
    data = tmp_path / "pairs"
    data.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(data / f"{i}.png")
        rows.append({"file": f"{i}.png", "caption": f"picture number {i}"})
    (data / "pairs.json").write_text(json.dumps(rows))

    status, out = run_command(add_check_parser, ["check-plugin", "vlbench-image-match"])
    assert status == 0, out
    assert "needs configuration: dataset 'folder_pairs': set the option root" in " ".join(out.split())
    assert "2 passed, 0 failed, 2 skipped" in out  # own_image: contract, end-to-end; folder_pairs skipped
    status, out = run_command(add_check_parser, ["check-plugin", "vlbench-image-match", "--option", f"folder_pairs.root={data}"])
    assert status == 0 and "4 passed, 0 failed, 0 skipped" in out, out


def test_new_plugin_help_is_whole(capsys):
    with pytest.raises(SystemExit):
        cli.main(["new-plugin", "--help"])
    out = capsys.readouterr().out
    assert "a starting point to replace:" in out and "- fusion: CLIP-style pooled projections (embedding objective)." in out
