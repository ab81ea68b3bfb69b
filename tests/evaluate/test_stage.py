"""The evaluate stage on the small recipe: base, tuned and quantized suites side by side."""

import json
from pathlib import Path

from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from synthtune.report.html import build_report
from tests.conftest import write_recipe


def test_suites_side_by_side_with_the_quantized_column_in_one_run(tmp_path: Path) -> None:
    path = write_recipe(
        tmp_path,
        {
            "evaluate": {
                "suites": ["perplexity", "generation", "rules", "classification"],
                "generation_samples": 6,
                "max_new_tokens": 8,
            },
            "export": {
                "quantize": "int8",
                "latency_prompts": 1,
                "latency_new_tokens": 2,
                "quality_samples": 8,
            },
        },
    )
    recipe = load_recipe(path)
    result = run_recipe(recipe, tmp_path / "runs", quiet=True)
    first = json.loads((result.run_dir / "evaluate" / "metrics.json").read_text())
    # forgetting runs for causal LMs without being listed (evaluate.forgetting.enabled)
    assert set(first["suites"]) == {"perplexity", "generation", "rules", "forgetting"}
    probe = first["suites"]["forgetting"]
    assert {"base", "tuned", "quantized"} <= set(probe) and probe["n"] == 200
    assert probe["ratio"] == round(probe["tuned"] / probe["base"], 3)
    assert "train.task is causal" in first["skipped"]["classification"]
    # export runs before evaluate: its int8 model is the third column of the same run
    assert set(first["models"]) == {"base", "tuned", "quantized"}
    assert first["models"]["quantized"].endswith("model-int8")
    assert first["quantized"] == "int8 via torch-ao-dynamic (cpu)"
    ppl = first["suites"]["perplexity"]
    assert ppl["change_pct"] == round(100 * (ppl["tuned"] - ppl["base"]) / ppl["base"], 2)
    assert ppl["quantized"] > 0 and abs(ppl["quantized_change_pct"]) < 50
    generation = first["suites"]["generation"]
    # the demo's real data are headlines (no QA pairs): prompts come from the templates
    assert generation["prompts"] == "templates" and generation["n"] == 6
    assert set(generation["base"]) == {"exact_match", "rouge_l", "chrf", "bleu"}
    assert {"base", "tuned", "quantized"} <= set(generation)
    assert set(generation["samples"][0]) == {"prompt", "reference", "base", "tuned", "quantized"}
    rules = first["suites"]["rules"]
    assert set(rules["tuned"]["per_rule"]) == {"no-antipyretic-below-38.5", "senior-sees-doctor"}
    assert rules["tuned"]["replies"]["applicable"] <= rules["n"] == 6
    assert "quantized" in rules

    # the report shows the three columns and export's latency table from the same run
    html = build_report(result.run_dir).read_text()
    assert "quantized (int8 via torch-ao-dynamic (cpu))" in html
    assert "Export: int8 quantization, latency and quality" in html
    assert "Generation: requests, tokens and cost" in html
    assert "Evaluation: forgetting probe" in html
    # every stage that ran has its wall seconds in state.json, shown per stage
    state = json.loads((result.run_dir / "state.json").read_text())["stages"]
    assert all(entry["seconds"] > 0 for entry in state.values())


def test_without_export_quantize_the_column_is_absent_with_the_reason(tmp_path: Path) -> None:
    path = write_recipe(tmp_path, {"evaluate": {"suites": ["perplexity"]}})
    result = run_recipe(load_recipe(path), tmp_path / "runs", quiet=True)
    metrics = json.loads((result.run_dir / "evaluate" / "metrics.json").read_text())
    assert set(metrics["models"]) == {"base", "tuned"}
    assert "no export/quantize.json" in metrics["quantized"]
