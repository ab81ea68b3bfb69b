"""examples/defect-inspection end to end through the CLI, made small: procedural images ->
quality -> mix -> CLIP -> ONNX export -> images suite -> report with confusion matrices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from synthtune.cli import app
from tests.conftest import ROOT, _merge

pytestmark = pytest.mark.slow

SMALL = {
    "generate": {"n": 64, "flush_every": 32},
    "train": {"epochs": 1},
    "export": {"vision": {"timed_batches": 2}},
}


def test_defect_inspection_runs_offline_from_one_command(tmp_path: Path) -> None:
    recipe = yaml.safe_load((ROOT / "examples" / "defect-inspection" / "recipe.yaml").read_text())
    _merge(recipe, SMALL)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "runs" / "defect-inspection"
    state = json.loads((run / "state.json").read_text())["stages"]
    assert set(state) >= {"generate", "quality", "mix", "train", "export", "evaluate"}
    suite = json.loads((run / "evaluate" / "metrics.json").read_text())["suites"]["images"]
    assert suite["labels"] == ["crack", "scratch", "spot", "stain"] and suite["n"] > 0
    assert {"base", "tuned", "macro_f1_change"} <= set(suite)
    vision = json.loads((run / "export" / "vision.json").read_text())
    assert vision["agreement"]["ort_fp32"]["max_abs_diff"] < 1e-4
    assert (run / "export" / "vision" / "model-int8.onnx").exists()
    assert 'alt="confusion matrices"' in (run / "report.html").read_text(encoding="utf-8")
