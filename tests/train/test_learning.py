"""Learning tests (not smoke tests): a rule-defined task the tuned model must actually learn.

Task: sentiment of templated financial headlines (the label follows from the wording), the
examples/financial-sentiment recipe. Measured on 2 CPU cores: LoRA 1.00 accuracy, full
fine-tuning 0.81, base with a fresh head 0.40 (three classes).
"""

import json
from pathlib import Path

import pytest
import yaml

from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _run(tmp_path: Path, method: str) -> tuple[dict, dict]:
    recipe = yaml.safe_load((ROOT / "examples" / "financial-sentiment" / "recipe.yaml").read_text())
    recipe["train"]["method"] = method
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = run_recipe(load_recipe(path), tmp_path / "runs", quiet=True)
    metrics = json.loads((result.run_dir / "evaluate" / "metrics.json").read_text())
    quantize = json.loads((result.run_dir / "export" / "quantize.json").read_text())
    return metrics["suites"]["classification"], quantize


@pytest.mark.parametrize(("method", "threshold"), [("lora", 0.9), ("full", 0.7)])
def test_classifier_learns_the_rule_defined_sentiment(tmp_path, method, threshold) -> None:
    scores, quantize = _run(tmp_path, method)
    assert scores["n"] >= 100
    assert scores["base"]["accuracy"] < 0.6  # three classes: a fresh head is near chance
    assert scores["tuned"]["accuracy"] >= threshold, scores
    assert scores["tuned"]["macro_f1"] >= threshold - 0.05, scores
    # the merged + int8 classifier is the third column, and keeps what was learned
    assert scores["quantized"]["accuracy"] >= scores["tuned"]["accuracy"] - 0.05, scores
    assert quantize["task"] == "classification" and quantize["backend"] == "torch-ao-dynamic"
    assert quantize["fp32"]["accuracy"] == scores["tuned"]["accuracy"]
    assert quantize["quantized"]["size_bytes"] < quantize["fp32"]["size_bytes"]
    assert quantize["quantized"]["p95_ms"] >= quantize["quantized"]["p50_ms"] > 0


def test_prefix_tuning_lowers_validation_loss(tmp_path: Path) -> None:
    """Prefix tuning learns measurably on the demo's SFT data (measured: 4.97 -> 4.90, -1.5 %)."""
    from tests.conftest import write_recipe

    recipe = write_recipe(
        tmp_path,
        {
            "train": {
                "method": "prefix",
                "epochs": 4,
                "eval_strategy": "steps",
                "eval_steps": 5,
                "lr": {"adapter": 0.01},
            },
            "local_tiny": {"pretrain_epochs": 1},
        },
    )
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="train", quiet=True)
    history = json.loads((result.run_dir / "train" / "metrics.json").read_text())["log_history"]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert len(evals) >= 3
    assert min(evals) < evals[0] * 0.995, evals
