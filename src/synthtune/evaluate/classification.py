"""Classification suite: class-level metrics of each model on the labelled test records, and
the TF-IDF linear baseline beside them (docs/evaluation.md).

Per model: accuracy and macro-F1 with bootstrap intervals, per-class precision / recall / F1 /
support, macro and weighted averages, the confusion matrix (``class_metrics``). The base is
the pre-trained model with a fresh, seeded head: the chance-level reference the tuned model
must beat; the baseline is the cheap reference it should beat too.
"""

from __future__ import annotations

from typing import Any

from synthtune import plugins
from synthtune.classify import labelled, predict
from synthtune.config import Recipe
from synthtune.evaluate.baseline import score_baseline
from synthtune.evaluate.caveats import classifier_caveats
from synthtune.evaluate.class_metrics import class_metrics
from synthtune.evaluate.suites import Columns, EvalInputs, Suite


def measure(model: Any, tokenizer: Any, inputs: EvalInputs, variant: str) -> dict[str, Any]:
    texts, truth = labelled(inputs.test, inputs.labels)
    cfg = inputs.recipe.evaluate
    # the length the model was trained with: longer inputs are a shift it never saw
    predicted = predict(model, tokenizer, texts, max_length=inputs.recipe.train.max_length)
    return class_metrics(truth, predicted, inputs.labels, cfg.bootstrap, inputs.recipe.seed)


def summarize(columns: Columns, inputs: EvalInputs) -> dict[str, Any]:
    """``{n, labels, bootstrap, base?, tuned, quantized?, baseline?}``; each model column is
    :func:`class_metrics`'s result."""
    texts, truth = labelled(inputs.test, inputs.labels)
    cfg = inputs.recipe.evaluate
    out: dict[str, Any] = {
        "n": len(truth),
        "labels": inputs.labels,
        "bootstrap": {"resamples": cfg.bootstrap.resamples, "confidence": cfg.bootstrap.confidence},
        **columns,
    }
    if cfg.baseline.enabled:
        out["baseline"] = score_baseline(
            inputs.train,
            inputs.val,
            texts,
            truth,
            inputs.labels,
            cfg.baseline,
            cfg.bootstrap,
            inputs.recipe.seed,
        )
    return out


def always(recipe: Recipe) -> bool:
    """A classifier is always measured by its own suite."""
    return True


def caveats(summary: dict[str, Any], recipe: Recipe) -> list[str]:
    return classifier_caveats("classification", summary, recipe)


plugins.register_suite(
    "classification",
    Suite(
        task="classification",
        measure=measure,
        summarize=summarize,
        auto=always,
        caveats=caveats,
    ),
)
