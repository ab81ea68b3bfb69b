"""The mix stage with real data: schedule rounds, off-distribution records left out, report."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from synthtune.report.html import build_report
from synthtune.testing.arms_setting import write_setting


def _recipe(tmp_path: Path, mix: dict) -> Path:
    path = write_setting(tmp_path, real=300)
    recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    recipe["generate"]["n"] = 400
    recipe["mix"].update(mix)
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


def test_schedule_injects_on_distribution_records_round_by_round(tmp_path: Path) -> None:
    path = _recipe(tmp_path, {"schedule": {"per_round": 10, "max_rounds": 4}})
    result = run_recipe(load_recipe(path), tmp_path / "runs", quiet=True, until="mix")
    summary = result.outcomes[-1].summary
    rounds = summary["rounds"]
    assert rounds[0]["round"] == 0 and rounds[0]["wasserstein"] is not None
    assert summary["stopped"] in {
        "threshold",
        "budget",
        "no improvement",
        "max rounds",
        "coverage exhausted",
    }
    real_train = summary["splits"]["train"]["real"]
    assert rounds[0]["synthetic"] == round(real_train / 3)  # the starting ratio 1:3
    run = tmp_path / "runs" / "arms"
    assert json.loads((run / "mix" / "rounds.json").read_text()) == rounds
    from synthtune.store import RunStore

    train = RunStore(run).read_table("mix", "train")
    chosen = [r for r in train if r.source == "synthetic"]
    assert len(chosen) == summary["synthetic_used"]
    # the off-topic arm is fluent and accepted, but outside every real cluster: never injected
    assert {r.lineage["template"] for r in chosen} <= {"triage", "boilerplate", "looping"}
    assert all("mix_round" in r.lineage for r in chosen)
    assert set(summary["coverage"]) == {"start", "final"}
    html = build_report(run).read_text(encoding="utf-8")
    assert "Injection rounds" in html and "distance per round" in html


def test_budget_caps_the_synthetic_share(tmp_path: Path) -> None:
    path = _recipe(
        tmp_path,
        {
            "ratio": "1:4",
            "stop_when": {"wasserstein_below": 0.0001},
            "schedule": {"per_round": 15, "max_rounds": 20, "max_ratio": "1:2"},
        },
    )
    result = run_recipe(load_recipe(path), tmp_path / "runs", quiet=True, until="mix")
    summary = result.outcomes[-1].summary
    assert summary["synthetic_used"] <= summary["splits"]["train"]["real"] / 2 + 1
    assert summary["stopped"] != "threshold"
