"""Real data first, end to end through the CLI: a recipe with only real train/validation/test
files (no generate section) and the packaged MiniLM as base trains, evaluates against the
TF-IDF baseline and reports; the same recipe plus one generate section adds synthetic rows to
train only."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.store import RunStore
from tests.conftest import ROOT

pytestmark = pytest.mark.slow

EXAMPLE = ROOT / "examples" / "health-outlets"
OUTLETS = ("bbchealth", "goodhealth", "KaiserHealthNews", "reuters_health")
SIZES = {"train": 8, "validation": 3, "test": 6}


def _subset(folder: Path) -> None:
    """Four outlets of the example's real files, a few rows each (keeps the test short)."""
    (folder / "data").mkdir()
    for split, size in SIZES.items():
        taken: dict[str, int] = defaultdict(int)
        lines = []
        for line in (EXAMPLE / "data" / f"{split}.jsonl").read_text("utf-8").splitlines():
            outlet = json.loads(line)["outlet"]
            if outlet in OUTLETS and taken[outlet] < size:
                taken[outlet] += 1
                lines.append(line)
        (folder / "data" / f"{split}.jsonl").write_text("\n".join(lines) + "\n", "utf-8")


def _recipe(folder: Path, name: str, with_generate: bool) -> Path:
    recipe = yaml.safe_load((EXAMPLE / "recipe.yaml").read_text("utf-8"))
    recipe["name"] = name
    recipe["train"].update({"max_steps": 6, "batch_size": 8})
    recipe["evaluate"] = {"bootstrap": {"resamples": 200}}
    if with_generate:
        synthetic = yaml.safe_load((EXAMPLE / "recipe-synthetic.yaml").read_text("utf-8"))
        template = synthetic["generate"]["templates"][0]
        template["slots"]["outlet"] = {"choice": list(OUTLETS)}
        recipe["generate"] = {**synthetic["generate"], "n": 24}
        recipe["quality"] = synthetic["quality"]
        recipe["mix"].update({"ratio": "1:2", "schedule": {"max_rounds": 0}})
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("real-first")
    _subset(folder)
    out = folder / "runs"
    for name, with_generate in (("real-only", False), ("real-plus-synthetic", True)):
        result = CliRunner().invoke(
            app, ["run", str(_recipe(folder, name, with_generate)), "--out", str(out), "-q"]
        )
        assert result.exit_code == 0, result.output
        (out / f"{name}.out").write_text(result.output, encoding="utf-8")
    return out


def test_the_real_only_run_uses_the_three_files_and_no_synthetic_row(runs: Path) -> None:
    store = RunStore(runs / "real-only")
    sizes = {split: len(store.read_table("mix", split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 32, "val": 12, "test": 24}
    assert {r.source for r in store.read_table("mix", "train")} == {"real"}
    mix = store.stage_state("mix")["summary"]
    assert mix["real"]["rows_read"] == 68 and mix["real"]["duplicates"] == 0
    assert mix["labels"]["train"]["real"] == dict.fromkeys(sorted(OUTLETS), 8)
    assert store.stage_state("generate")["summary"]["records"] == 0


def test_the_classification_report_has_base_tuned_baseline_and_intervals(runs: Path) -> None:
    metrics = json.loads((runs / "real-only" / "evaluate" / "metrics.json").read_text())
    suite = metrics["suites"]["classification"]
    assert suite["n"] == 24
    for column in ("base", "tuned", "baseline"):
        scores = suite[column]
        assert 0.0 <= scores["accuracy"] <= 1.0
        low, high = scores["ci"]["accuracy"]
        assert low <= scores["accuracy"] <= high
        assert set(scores["per_class"]) == set(OUTLETS)
        matrix = scores["confusion_matrix"]
        assert sum(map(sum, matrix)) == 24  # every test row counted once
    html = (runs / "real-only" / "report.html").read_text()
    assert "TF-IDF" in html and "Confusion" in html
    printed = (runs / "real-only.out").read_text()
    line = next(x for x in printed.splitlines() if x.strip().startswith("TF-IDF"))
    assert f"accuracy {suite['baseline']['accuracy']:.3f} [" in line


def test_one_generate_section_adds_synthetic_rows_to_train_only(runs: Path) -> None:
    store = RunStore(runs / "real-plus-synthetic")
    train = store.read_table("mix", "train")
    synthetic = [r for r in train if r.source == "synthetic"]
    assert 0 < len(synthetic) <= 16  # ratio 1:2 of 32 real rows
    # label-aware injection: every outlet gets synthetic rows (mix.labels as-real, 1:2 of 8)
    assert {r.payload.label for r in synthetic} == set(OUTLETS)
    for split in ("val", "test"):
        assert {r.source for r in store.read_table("mix", split)} == {"real"}
    real_test = [r.id for r in RunStore(runs / "real-only").read_table("mix", "test")]
    assert [r.id for r in store.read_table("mix", "test")] == real_test  # same test rows
