"""Forgetting probe (causal LMs): perplexity on general-domain prose, base vs tuned.

Fine-tuning on a narrow domain can cost general language ability. The probe scores a fixed
sample of :func:`synthtune.models.general_corpus` (English prose shipped with CPython, the
same for every recipe: seed ``SAMPLE_SEED``, ``evaluate.forgetting.samples`` paragraphs) with
every model and warns when the tuned model's perplexity exceeds the base's by more than
``evaluate.forgetting.max_ratio``.
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

from synthtune import plugins
from synthtune.config import Recipe
from synthtune.evaluate.suites import Columns, EvalInputs, Suite
from synthtune.models import general_corpus
from synthtune.perplexity import PerplexityScorer

SAMPLE_SEED = 17  # fixed, so the probe's numbers compare across recipes and runs


@lru_cache(maxsize=4)
def general_sample(samples: int) -> tuple[str, ...]:
    """``samples`` paragraphs of the general corpus (all of them when it has fewer)."""
    corpus = general_corpus()
    return tuple(random.Random(SAMPLE_SEED).sample(corpus, min(samples, len(corpus))))


def measure(model: Any, tokenizer: Any, inputs: EvalInputs, variant: str) -> dict[str, Any]:
    texts = general_sample(inputs.recipe.evaluate.forgetting.samples)
    return {"perplexity": round(PerplexityScorer(model, tokenizer).corpus_perplexity(texts), 3)}


def forgetting_summary(columns: Columns, n: int, max_ratio: float) -> dict[str, Any]:
    """``{n, <model>: perplexity, ratio, max_ratio, warning}``; ``ratio`` is tuned / base
    (None without a base column), ``warning`` a sentence when it exceeds ``max_ratio``."""
    out: dict[str, Any] = {"n": n, **{k: col["perplexity"] for k, col in columns.items()}}
    base, tuned = out.get("base"), out.get("tuned")
    ratio = round(tuned / base, 3) if base and tuned is not None else None
    out.update(ratio=ratio, max_ratio=max_ratio, warning=None)
    if ratio is not None and ratio > max_ratio:
        out["warning"] = (
            f"forgetting: general-domain perplexity rose {ratio:g}x after tuning "
            f"({base:g} -> {tuned:g}, over {n} general paragraphs; warning above "
            f"{max_ratio:g}x): lower the learning rate or epochs, or use an adapter method"
        )
    return out


def summarize(columns: Columns, inputs: EvalInputs) -> dict[str, Any]:
    cfg = inputs.recipe.evaluate.forgetting
    return forgetting_summary(columns, len(general_sample(cfg.samples)), cfg.max_ratio)


def enabled(recipe: Recipe) -> bool:
    return recipe.evaluate.forgetting.enabled


def caveats(summary: dict[str, Any], recipe: Recipe) -> list[str]:
    return [summary["warning"]] if summary.get("warning") else []


plugins.register_suite(
    "forgetting",
    Suite(task="causal", measure=measure, summarize=summarize, auto=enabled, caveats=caveats),
)
