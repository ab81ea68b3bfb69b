"""Perplexity suite: corpus perplexity of each model on the reference texts of the test split
(assistant turns, or the whole text for plain-text real data), with the % change of tuned vs
base and of quantized vs tuned (the model it was made from)."""

from __future__ import annotations

from typing import Any

from synthtune import plugins
from synthtune.config import Recipe
from synthtune.evaluate.suites import Columns, EvalInputs, Suite, change_pct
from synthtune.perplexity import PerplexityScorer


def measure(model: Any, tokenizer: Any, inputs: EvalInputs, variant: str) -> dict[str, Any]:
    texts = [r.payload.text("response") for r in inputs.test]
    return {"perplexity": round(PerplexityScorer(model, tokenizer).corpus_perplexity(texts), 3)}


def summarize(columns: Columns, inputs: EvalInputs) -> dict[str, Any]:
    """Flat ``{[base, change_pct,] tuned[, quantized, quantized_change_pct]}``."""
    out: dict[str, Any] = {name: col["perplexity"] for name, col in columns.items()}
    if "base" in out:  # absent with evaluate.base: skip
        out["change_pct"] = change_pct(out["tuned"], out["base"])
    if "quantized" in out:
        out["quantized_change_pct"] = change_pct(out["quantized"], out["tuned"])
    return out


def caveats(summary: dict[str, Any], recipe: Recipe) -> list[str]:
    if "base" not in summary or summary["tuned"] < summary["base"]:
        return []
    return [
        f"perplexity: the tuned model ({summary['tuned']:g}) is no better than the base "
        f"({summary['base']:g}) on the test split"
    ]


plugins.register_suite(
    "perplexity", Suite(task="causal", measure=measure, summarize=summarize, caveats=caveats)
)
