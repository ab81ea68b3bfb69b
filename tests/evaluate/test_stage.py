"""The evaluate stage on the small recipe: suites side by side, then the quantized column."""

import json
from pathlib import Path

from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from tests.conftest import write_recipe


def test_suites_side_by_side_and_quantized_after_export(tmp_path: Path) -> None:
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
    metrics_path = result.run_dir / "evaluate" / "metrics.json"
    first = json.loads(metrics_path.read_text())
    assert set(first["suites"]) == {"perplexity", "generation", "rules"}
    assert "train.task is causal" in first["skipped"]["classification"]
    assert set(first["models"]) == {"base", "tuned"}
    assert "no export/quantize.json" in first["quantized"]
    ppl = first["suites"]["perplexity"]
    assert ppl["change_pct"] == round(100 * (ppl["tuned"] - ppl["base"]) / ppl["base"], 2)
    generation = first["suites"]["generation"]
    # the demo's real data are headlines (no QA pairs): prompts come from the templates
    assert generation["prompts"] == "templates" and generation["n"] == 6
    assert set(generation["base"]) == {"exact_match", "rouge_l", "chrf", "bleu"}
    assert set(generation["samples"][0]) == {"prompt", "reference", "base", "tuned"}
    rules = first["suites"]["rules"]
    assert set(rules["tuned"]["per_rule"]) == {"no-antipyretic-below-38.5", "senior-sees-doctor"}
    assert rules["tuned"]["replies"]["applicable"] <= rules["n"] == 6

    # evaluate runs before export: re-evaluating afterwards adds the quantized column
    run_recipe(recipe, tmp_path / "runs", from_stage="evaluate", until="evaluate", quiet=True)
    second = json.loads(metrics_path.read_text())
    assert second["models"]["quantized"].endswith("model-int8")
    assert second["quantized"] == "int8 via torch-ao-dynamic (cpu)"
    ppl = second["suites"]["perplexity"]
    assert ppl["quantized"] > 0 and abs(ppl["quantized_change_pct"]) < 50
    assert {"base", "tuned", "quantized"} <= set(second["suites"]["generation"])
    assert "quantized" in second["suites"]["rules"]
    assert "quantized" in second["suites"]["generation"]["samples"][0]
