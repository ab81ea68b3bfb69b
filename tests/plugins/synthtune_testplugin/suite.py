"""``evaluate.suites: [agreement]``: accuracy of each model variant on the labelled test
records, with the counts it was computed from (so a test can recompute it)."""

from __future__ import annotations

from typing import Any

from synthtune.classify import labelled, predict
from synthtune.evaluate.suites import EvalInputs, Suite, side_by_side
from synthtune.plugins import register_suite
from synthtune_testplugin.task import KIND


def measure(model: Any, tokenizer: Any, inputs: EvalInputs, variant: str) -> dict[str, Any]:
    import torch

    texts, truth = labelled(inputs.test, inputs.labels)
    with torch.no_grad():
        predicted = list(predict(model, tokenizer, texts))
    hits = sum(int(p == t) for p, t in zip(predicted, truth, strict=True))
    return {"n": len(truth), "hits": hits, "accuracy": hits / len(truth) if truth else None}


register_suite("agreement", Suite(task=KIND, measure=measure, summarize=side_by_side))
