"""Perplexity suite: corpus perplexity of each model on the reference texts of the test split
(assistant turns, or the whole text for plain-text real data), with the % change of tuned vs
base and of quantized vs tuned (the model it was made from)."""

from __future__ import annotations

from typing import Any

from synthtune.evaluate.suites import SUITES, Columns, EvalInputs, Suite, change_pct
from synthtune.perplexity import PerplexityScorer


def measure(model: Any, tokenizer: Any, inputs: EvalInputs, variant: str) -> dict[str, Any]:
    texts = [r.payload.text("response") for r in inputs.test]
    return {"perplexity": round(PerplexityScorer(model, tokenizer).corpus_perplexity(texts), 3)}


def summarize(columns: Columns, inputs: EvalInputs) -> dict[str, Any]:
    """Flat ``{base, tuned, change_pct[, quantized, quantized_change_pct]}``."""
    out: dict[str, Any] = {name: col["perplexity"] for name, col in columns.items()}
    out["change_pct"] = change_pct(out["tuned"], out["base"])
    if "quantized" in out:
        out["quantized_change_pct"] = change_pct(out["quantized"], out["tuned"])
    return out


SUITES.register("perplexity", Suite(task="causal", measure=measure, summarize=summarize))
