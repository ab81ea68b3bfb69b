"""Class-level metrics of one classifier's predictions, with bootstrap intervals.

Everything is computed from the confusion matrix (rows: true class, columns: predicted), so
a model's whole result is ``n_labels²`` counts however many texts were scored, and the
bootstrap recomputes the headline metrics from resampled matrices in fixed-size chunks.

Averages follow scikit-learn's defaults: ``macro`` is the unweighted mean over the classes
that occur in the truth or the predictions (a class absent from both says nothing about the
model), ``weighted`` weighs each class by its support. ``per_class`` holds every class the
model knows, support 0 included, so a class missing from the test set is visible (the same
shape as the images suite's).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from synthtune.config.training import BootstrapConfig

Labels = Sequence[int] | np.ndarray  # class ids

# resampled index matrices are built this many cells at a time (chunk × n_test)
_CHUNK_CELLS = 1_000_000


def confusion(truth: Labels, predicted: Labels, n_labels: int) -> np.ndarray:
    """``[true, predicted]`` counts."""
    codes = np.asarray(truth, dtype=np.int64) * n_labels + np.asarray(predicted, dtype=np.int64)
    return np.bincount(codes, minlength=n_labels * n_labels).reshape(n_labels, n_labels)


def headline(matrices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and macro-F1 of a stack of confusion matrices ``(..., k, k)``."""
    tp = np.diagonal(matrices, axis1=-2, axis2=-1).astype(float)
    support = matrices.sum(axis=-1)
    predicted = matrices.sum(axis=-2)
    total = support.sum(axis=-1)
    seen = support + predicted
    f1 = np.divide(2 * tp, seen, out=np.zeros_like(tp), where=seen > 0)
    present = (seen > 0).sum(axis=-1)
    accuracy = np.divide(tp.sum(axis=-1), total, out=np.zeros(total.shape), where=total > 0)
    macro = np.divide(f1.sum(axis=-1), present, out=np.zeros(total.shape), where=present > 0)
    return accuracy, macro


def bootstrap_intervals(
    truth: Labels, predicted: Labels, n_labels: int, cfg: BootstrapConfig, seed: int
) -> dict[str, list[float]]:
    """Percentile intervals of accuracy and macro-F1 over ``cfg.resamples`` resamples of the
    test set (with replacement, seeded: every model scored with the same seed sees the same
    resamples, so their intervals are paired)."""
    n = len(truth)
    if n == 0 or cfg.resamples == 0:
        return {}
    truth_arr = np.asarray(truth, dtype=np.int64)
    pred_arr = np.asarray(predicted, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chunk = max(1, _CHUNK_CELLS // n)
    accuracy, macro = [], []
    for start in range(0, cfg.resamples, chunk):
        rows = min(chunk, cfg.resamples - start)
        idx = rng.integers(0, n, size=(rows, n))
        codes = truth_arr[idx] * n_labels + pred_arr[idx]
        codes += (np.arange(rows) * n_labels * n_labels)[:, None]
        stack = np.bincount(codes.ravel(), minlength=rows * n_labels * n_labels)
        acc, f1 = headline(stack.reshape(rows, n_labels, n_labels))
        accuracy.append(acc)
        macro.append(f1)
    tail = 100 * (1 - cfg.confidence) / 2
    out = {}
    for name, values in (("accuracy", accuracy), ("macro_f1", macro)):
        low, high = np.percentile(np.concatenate(values), [tail, 100 - tail])
        out[name] = [round(float(low), 4), round(float(high), 4)]
    return out


def class_metrics(
    truth: Labels,
    predicted: Labels,
    labels: Sequence[str],
    cfg: BootstrapConfig,
    seed: int,
) -> dict[str, Any]:
    """Accuracy, macro-F1 and their intervals; per-class precision/recall/F1/support; macro
    and weighted averages; the confusion matrix. Rounded to 4 places for reports."""
    k = len(labels)
    matrix = confusion(truth, predicted, k)
    tp = np.diagonal(matrix).astype(float)
    support = matrix.sum(axis=1)
    predicted_count = matrix.sum(axis=0)
    precision = np.divide(tp, predicted_count, out=np.zeros(k), where=predicted_count > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    seen = support + predicted_count
    f1 = np.divide(2 * tp, seen, out=np.zeros(k), where=seen > 0)
    present = seen > 0
    accuracy, macro_f1 = (float(v) for v in headline(matrix))
    total = int(support.sum())

    def average(values: np.ndarray, weights: np.ndarray) -> float:
        return round(float(np.average(values, weights=weights)), 4) if weights.sum() else 0.0

    return {
        "accuracy": round(accuracy, 4),
        "macro_f1": round(macro_f1, 4),
        "ci": bootstrap_intervals(truth, predicted, k, cfg, seed),
        "macro": {
            name: average(values, present.astype(float))
            for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
        },
        "weighted": {
            name: average(values, support.astype(float))
            for name, values in (("precision", precision), ("recall", recall), ("f1", f1))
        },
        "per_class": {
            label: {
                "precision": round(float(precision[i]), 4),
                "recall": round(float(recall[i]), 4),
                "f1": round(float(f1[i]), 4),
                "support": int(support[i]),
            }
            for i, label in enumerate(labels)
        },
        "confusion_matrix": matrix.tolist(),
        "n": total,
    }
