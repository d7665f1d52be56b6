"""Suite validation: every bad input is one clear message with file and key; matrix expansion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import HAS_LM_EXTRA

from vlbench import hookimpl
from vlbench.errors import SuiteError
from vlbench.manager import PluginHost
from vlbench.results import read_record
from vlbench.suite import load_suite
from vlbench.types import FusionSpec

ROOT = Path(__file__).resolve().parents[1]

BASE = """
[suite]
name = "t"
[train]
epochs = 1
[[tasks]]
name = "person_search"
[[vision]]
name = "mobilenetv3_small_100"
image_size = [64, 32]
[[text]]
name = "clip_text"
[[fusions]]
name = "contrastive"
"""


class ClassifierOnly:
    @hookimpl
    def vlbench_register_fusions(self, register):
        register(FusionSpec(name="head_only", factory=lambda **kw: None, objectives=frozenset({"classification"})))


@pytest.fixture(scope="module")
def host():
    return PluginHost([("classifier_only", ClassifierOnly())])


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "suite.toml"
    path.write_text(text)
    return path


def error_of(tmp_path, host, text: str) -> str:
    with pytest.raises(SuiteError) as err:
        load_suite(write(tmp_path, text), host)
    return str(err.value)


def test_base_suite_resolves_one_run_with_defaults_filled(tmp_path, host):
    suite = load_suite(write(tmp_path, BASE), host)
    (run,) = suite.runs
    assert run.choice("vision").options["image_size"] == [64, 32] and run.choice("vision").options["pretrained"] is False
    assert run.choice("dataset").name == "synthetic_pedestrians"
    assert run.train["encoder_lr"] == run.train["lr"]
    assert len(run.run_id) == 16
    assert load_suite(write(tmp_path, BASE), host).runs[0].run_id == run.run_id  # stable


def test_matrix_expansion_and_bare_names(tmp_path, host):
    text = BASE + '\n[[text]]\nname = "bert_mini"\n'
    text = text.replace('[suite]\nname = "t"', '[suite]\nname = "t"\nseeds = [0, 1]')
    suite = load_suite(write(tmp_path, text), host)
    assert len(suite.runs) == 1 * 2 * 1 * 1 * 2
    assert len({r.run_id for r in suite.runs}) == 4
    bare = 'vision = ["deit_tiny_patch16_224", "convnext_atto"]\n' + BASE.replace(
        '[[vision]]\nname = "mobilenetv3_small_100"\nimage_size = [64, 32]', ""
    )
    assert [r.choice("vision").name for r in load_suite(write(tmp_path, bare), host).runs] == [
        "deit_tiny_patch16_224",
        "convnext_atto",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("[train]\nepochs = 1", "[train]\nepochs = 1\nlearning_rate = 0.1"),
            "train.learning_rate: unknown key. Did you mean 'lr'?",
        ),
        (("epochs = 1", 'epochs = "ten"'), "train.epochs: expected an integer"),
        (('name = "mobilenetv3_small_100"', 'name = "mobilenetv3_smal_100"'), "Did you mean 'mobilenetv3_small_100'"),
        (
            ('name = "clip_text"', 'name = "clip_text"\noptions = { widht = 64 }'),
            "text[0].options.widht: unknown key. Did you mean 'width'",
        ),
        (
            ('name = "clip_text"', 'name = "clip_text"\noptions = { width = "wide" }'),
            "text[0].options.width: expected an integer",
        ),
        (
            ('name = "contrastive"', 'name = "head_only"'),
            "needs the 'embedding' objective. Fusions that can serve it: contrastive",
        ),
        (("image_size = [64, 32]", "image_size = [64]"), "vision[0].image_size: expected [H, W]"),
        (('[suite]\nname = "t"', "[suite]"), "suite.name: required"),
        (("[[tasks]]", "[[task]]"), "task: unknown key. Did you mean 'tasks'?"),
        (('name = "person_search"', 'name = "person_search"\ndataset = "cuhk_pedez"'), "Did you mean 'cuhk_pedes'"),
        (
            ("image_size = [64, 32]", 'weights = "missing.safetensors"'),
            "vision[0].weights: file 'missing.safetensors' does not exist",
        ),
        (('name = "clip_text"', 'name = "clip_text"\npretrained = "no"'), "text[0].pretrained: expected true or false"),
        (("epochs = 1", "epochs = 1\nmax_steps_per_epoch = -1"), "train.max_steps_per_epoch: must be at least 0"),
        (
            ("epochs = 1", 'epochs = 1\ncost_batch_sizes = ["a"]'),
            "train.cost_batch_sizes: expected a non-empty array of integers >= 1",
        ),
        (("epochs = 1", "epochs = 1\nlr = nan"), "train.lr: expected a finite number, got nan"),
        (
            ('name = "person_search"', 'name = "person_search"\ndataset_options = { identities = [10, inf, 3] }'),
            "tasks[0].dataset_options.identities[1]: expected a finite number, got inf",
        ),
        (('[suite]\nname = "t"', '[suite]\nname = "t"\nseed = -1'), "suite.seed: seeds are integers in [0, 2**32)"),
        (('[suite]\nname = "t"', '[suite]\nname = ".."'), "suite.name: required: a name of letters"),
        (('name = "contrastive"', 'name = "head_only"'), "fusions[0].name: fusion 'head_only' provides"),
    ],
)
def test_bad_input_names_file_key_and_fix(tmp_path, host, change, expected):
    old, new = change
    assert old in BASE
    message = error_of(tmp_path, host, BASE.replace(old, new, 1))
    assert str(tmp_path / "suite.toml") in message
    assert expected in message


@pytest.mark.parametrize(
    ("axis", "expected"), [("[1]", "an integer (1)"), ('[["convnext_atto"]]', 'an array (["convnext_atto"])')]
)
def test_axis_entry_neither_name_nor_table(tmp_path, host, axis, expected):
    text = f"vision = {axis}\n" + BASE.replace('[[vision]]\nname = "mobilenetv3_small_100"\nimage_size = [64, 32]\n', "")
    assert f"vision[0]: expected a table, got {expected}" in error_of(tmp_path, host, text)


def test_invalid_toml_is_a_suite_error(tmp_path, host):
    assert "not valid TOML" in error_of(tmp_path, host, "[suite\nname=")


def test_text_pretrained_defaults_to_the_encoders_own(tmp_path, host):
    packaged = BASE.replace('name = "clip_text"', 'name = "all_minilm_l6_v2"')
    assert load_suite(write(tmp_path, packaged), host).runs[0].choice("text").options["pretrained"] is True
    assert (
        load_suite(write(tmp_path, packaged.replace('"all_minilm_l6_v2"', '"all_minilm_l6_v2"\npretrained = false')), host)
        .runs[0]
        .choice("text")
        .options["pretrained"]
        is False
    )
    assert load_suite(write(tmp_path, BASE), host).runs[0].choice("text").options["pretrained"] is False


def test_cli_bad_suite_exits_2_without_traceback_and_writes_nothing(tmp_path):
    suite = write(tmp_path, BASE.replace("epochs = 1", "epochs = 0"))
    results = tmp_path / "results"
    proc = subprocess.run(
        [sys.executable, "-m", "vlbench.cli", "run", str(suite), "--results-dir", str(results)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "train.epochs: must be at least 1" in proc.stderr
    assert not results.exists()


@pytest.mark.parametrize("path", sorted((ROOT / "suites").glob("*.toml")), ids=lambda p: p.name)
def test_shipped_suite_validates_and_expands(path):
    try:
        suite = load_suite(path, PluginHost())
    except SuiteError as exc:  # without the optional extra, the suite must say how to install it
        if HAS_LM_EXTRA or "needs the optional `lm` extra" not in str(exc):
            raise
        pytest.skip(f"{path.name} needs the `lm` extra, which is not installed (and it says so)")
    assert suite.runs and all(run.suite == suite.name for run in suite.runs)


@pytest.mark.parametrize(
    "results", sorted(p for p in (ROOT / "leaderboard" / "results").iterdir() if p.is_dir()), ids=lambda p: p.name
)
def test_committed_records_are_valid_and_match_their_suite(results):
    """A suite edited without regenerating its committed records would publish numbers of other runs."""
    suite = next(s for p in (ROOT / "suites").glob("*.toml") if (s := load_suite(p, PluginHost())).name == results.name)
    records = [read_record(path) for path in sorted(results.glob("*.json"))]
    assert records and all(record["status"] == "ok" for record in records)
    assert {record["run_id"] for record in records} == {run.run_id for run in suite.runs}
