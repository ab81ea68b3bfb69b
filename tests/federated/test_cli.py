"""``synthtune federated simulate`` end to end: rounds table, baselines, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthtune.cli import app
from tests.federated.conftest import write_federated_recipe


@pytest.mark.slow
def test_simulate_command_writes_baselines_and_report(tmp_path: Path, tiny_model_dir: Path) -> None:
    recipe = write_federated_recipe(
        tmp_path,
        tiny_model_dir,
        overrides={
            "federated": {
                "rounds": 1,
                "clients": ["data/hospital-a.jsonl", "data/hospital-b.jsonl"],
            }
        },
    )
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["federated", "simulate", str(recipe), "--out", str(runs)])
    assert result.exit_code == 0, result.output
    assert "union val loss" in result.output and "full fine-tuning" in result.output
    run_dir = runs / "federated-hospitals"
    summary = json.loads((run_dir / "federated" / "summary.json").read_text())
    b = summary["baselines"]
    assert set(b["local"]) == {"client-0", "client-1"} and b["epochs"] == 1
    assert b["federated"] < b["initial"] and b["centralised"] < b["initial"]
    assert b["same_steps_epochs"] == 0.5
    html = (run_dir / "report.html").read_text()
    assert "client-0 alone" in html and "centralised" in html


@pytest.mark.parametrize("command", ["server", "client"])
def test_secagg_deployment_without_max_weight_is_refused_before_starting(
    tmp_path: Path, tiny_model_dir: Path, command: str
) -> None:
    # across machines the server cannot see the parties' sizes: the weight cap must be given
    recipe = write_federated_recipe(
        tmp_path, tiny_model_dir, overrides={"federated": {"secure_aggregation": {}}}
    )
    runs = tmp_path / "runs"
    extra = (
        ["--server", "127.0.0.1:9", "--data", str(tmp_path / "data" / "hospital-a.jsonl")]
        if command == "client"
        else ["--address", "127.0.0.1:0"]
    )
    result = CliRunner().invoke(
        app, ["federated", command, str(recipe), "--out", str(runs), *extra]
    )
    assert result.exit_code != 0
    assert "secure_aggregation.max_weight: required" in result.output
    assert not runs.exists()  # nothing started, nothing written
