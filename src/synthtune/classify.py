"""Batched prediction with a sequence classifier, shared by evaluation and export (both score
the same models the same way: right padding, truncation at the length the model was trained
with (256 by default), argmax of the logits).

Texts are batched in order of length and put back in input order: on 2,400 Chinese reviews
with multilingual-e5-small this cut padding, and evaluation time, several-fold.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from synthtune.lazy import inference_mode
from synthtune.records import Record


def _batches(
    tokenizer: Any, texts: Sequence[str], batch_size: int, device: Any, max_length: int
) -> Iterator[Any]:
    tokenizer.padding_side = "right"
    for start in range(0, len(texts), batch_size):
        yield tokenizer(
            list(texts[start : start + batch_size]),
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        ).to(device)


def _by_length(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The texts sorted by length (less padding per batch) and the order that restores them."""
    order = np.argsort([len(t) for t in texts], kind="stable")
    return [texts[i] for i in order], np.argsort(order, kind="stable")


@inference_mode
def class_logits(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 32, max_length: int = 256
) -> Any:
    """fp32 logits, one row per text (``batch_size=1`` avoids padding altogether)."""
    import torch

    model.eval()
    device = next(model.parameters()).device
    ordered, restore = _by_length(texts)
    out = [
        model(**enc).logits.float().cpu()
        for enc in _batches(tokenizer, ordered, batch_size, device, max_length)
    ]
    return torch.cat(out)[torch.as_tensor(restore)] if out else torch.zeros(0, 0)


@inference_mode
def predict(
    model: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 32, max_length: int = 256
) -> np.ndarray:
    """Predicted class ids. Only each batch's argmax is kept, so memory does not grow with
    the number of texts times the number of classes."""
    model.eval()
    device = next(model.parameters()).device
    ordered, restore = _by_length(texts)
    out = [
        model(**enc).logits.argmax(dim=-1).cpu().numpy()
        for enc in _batches(tokenizer, ordered, batch_size, device, max_length)
    ]
    return np.concatenate(out)[restore] if out else np.zeros(0, dtype=int)


def scores(truth: Sequence[int], predicted: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 (scikit-learn), rounded for reports."""
    from sklearn.metrics import accuracy_score, f1_score

    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, average="macro")), 4),
    }


def labelled(test: list[Record], labels: list[str]) -> tuple[list[str], list[int]]:
    """Texts and label ids of the test records whose label the model knows."""
    ids = {label: i for i, label in enumerate(labels)}
    usable = [r for r in test if r.payload.label in ids]
    return [r.payload.input_text() for r in usable], [ids[str(r.payload.label)] for r in usable]
