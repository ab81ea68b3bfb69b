"""Classification suite: accuracy and macro-F1 (scikit-learn) of base vs tuned on the test
split. The base is the pre-trained model with a fresh, seeded head: the chance-level reference
the tuned model must beat."""

from __future__ import annotations

from typing import Any

from synthtune.classify import labelled, predict, scores
from synthtune.evaluate.suites import SUITES, Columns, EvalInputs, Suite


def measure(model: Any, tokenizer: Any, inputs: EvalInputs, variant: str) -> dict[str, Any]:
    texts, truth = labelled(inputs.test, inputs.labels)
    return scores(truth, predict(model, tokenizer, texts))


def summarize(columns: Columns, inputs: EvalInputs) -> dict[str, Any]:
    return {"n": len(labelled(inputs.test, inputs.labels)[1]), **columns}


SUITES.register(
    "classification", Suite(task="classification", measure=measure, summarize=summarize)
)
