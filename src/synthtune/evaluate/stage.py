"""Evaluate stage: perplexity of base vs tuned on the real test split, with % change.

Both models score exactly the same texts with the same scorer, so the ratio is fair; test
records were never seen by the base model's pre-training (local-tiny) nor by training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.evaluate.classification import evaluate_classification
from synthtune.models import load_causal_lm, pick_device
from synthtune.perplexity import PerplexityScorer


def load_tuned(base_path: str, tuned_dir: Path) -> tuple[Any, Any]:
    """base + adapter when ``tuned_dir`` holds a peft adapter, else a full model folder."""
    if (tuned_dir / "adapter_config.json").exists():
        from peft import PeftModel

        model, tokenizer = load_causal_lm(base_path, dtype="float32")
        return PeftModel.from_pretrained(model, str(tuned_dir)).eval(), tokenizer
    return load_causal_lm(str(tuned_dir), dtype="float32")


class EvaluateStage:
    name = "evaluate"
    sections: tuple[str, ...] = ("evaluate",)

    def check(self, recipe: Recipe) -> None:
        return None

    def run(self, ctx: StageContext) -> dict[str, Any]:
        cfg = ctx.recipe.evaluate
        test = ctx.store.read_table("mix", "test")[: cfg.max_samples]
        texts = [r.payload.text("response") for r in test]
        base_path = ctx.resolve_model(ctx.recipe.train.base)
        results: dict[str, Any] = {"n_test": len(texts), "suites": {}}
        train = ctx.store.read_json("train", "metrics.json")
        if train.get("task") == "classification":
            results["suites"]["classification"] = evaluate_classification(
                test,
                base_path,
                ctx.store.path("train", "adapter"),
                train["labels"],
                ctx.recipe.seed,
            )
        elif "perplexity" in cfg.suites:
            base, tokenizer = load_causal_lm(base_path, dtype="float32")
            base_ppl = PerplexityScorer(base, tokenizer).corpus_perplexity(texts)
            tuned, tokenizer = load_tuned(base_path, ctx.store.path("train", "adapter"))
            tuned.to(pick_device())
            tuned_ppl = PerplexityScorer(tuned, tokenizer).corpus_perplexity(texts)
            results["suites"]["perplexity"] = {
                "base": round(base_ppl, 3),
                "tuned": round(tuned_ppl, 3),
                "change_pct": round(100 * (tuned_ppl - base_ppl) / base_ppl, 2),
            }
        ctx.store.write_json(self.name, "metrics.json", results)
        return {"records_in": len(test), "records_out": len(test), **results["suites"]}
