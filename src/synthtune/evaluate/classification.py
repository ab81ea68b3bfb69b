"""Classification suite: accuracy and macro-F1 (scikit-learn) of base vs tuned on the test
split. The base is the pre-trained model with a fresh, seeded head: the chance-level reference
the tuned model must beat."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from synthtune.evaluate.suites import SUITES, Columns, EvalInputs, Suite
from synthtune.records import Record


@torch.inference_mode()
def predict(model: Any, tokenizer: Any, texts: list[str], batch_size: int = 32) -> np.ndarray:
    model.eval()
    tokenizer.padding_side = "right"
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=256,
        ).to(model.device)
        out.append(model(**enc).logits.argmax(dim=-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def scores(truth: list[int], predicted: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, average="macro")), 4),
    }


def labelled(test: list[Record], labels: list[str]) -> tuple[list[str], list[int]]:
    """Texts and label ids of the test records whose label the model knows."""
    ids = {label: i for i, label in enumerate(labels)}
    usable = [r for r in test if r.payload.label in ids]
    return [r.payload.input_text() for r in usable], [ids[str(r.payload.label)] for r in usable]


def measure(model: Any, tokenizer: Any, inputs: EvalInputs, variant: str) -> dict[str, Any]:
    texts, truth = labelled(inputs.test, inputs.labels)
    return scores(truth, predict(model, tokenizer, texts))


def summarize(columns: Columns, inputs: EvalInputs) -> dict[str, Any]:
    return {"n": len(labelled(inputs.test, inputs.labels)[1]), **columns}


SUITES.register(
    "classification", Suite(task="classification", measure=measure, summarize=summarize)
)
