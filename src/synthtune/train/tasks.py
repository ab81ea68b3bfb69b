"""Task types of the train stage, registered by name: how a record becomes model inputs.

``causal_lm``: chat SFT with completion-only loss (``data.encode_record``). ``classification``:
the input text (the non-assistant turns, or the text itself) with the record's label as a
class index, trained through ``AutoModelForSequenceClassification``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from synthtune.errors import StageError
from synthtune.records import Record
from synthtune.registry import Registry
from synthtune.train.data import NoisyCollator, encode_record


@dataclass(frozen=True)
class TaskSpec:
    peft_task: str  # peft TaskType name
    load: Callable[[str, list[str]], tuple[Any, Any]]
    encode: Callable[[Any, Record, int, dict[str, int]], dict[str, Any]]
    collator: type[NoisyCollator]
    metrics: Callable[[Any], dict[str, float]] | None


def labels_of(records: list[Record]) -> list[str]:
    labels = sorted({r.payload.label for r in records if r.payload.label is not None})
    if len(labels) < 2:
        raise StageError(
            "train.task classification needs records with at least two labels "
            "(set `label:` on the templates, or a label field on the real data)"
        )
    return labels


def _load_causal(path: str, labels: list[str]) -> tuple[Any, Any]:
    from synthtune.models import load_causal_lm

    return load_causal_lm(path, dtype="float32")


def _load_classifier(path: str, labels: list[str]) -> tuple[Any, Any]:
    from synthtune.models import load_sequence_classifier

    return load_sequence_classifier(path, labels)


def _encode_causal(
    tokenizer: Any, record: Record, max_length: int, ids: dict[str, int]
) -> dict[str, Any]:
    return encode_record(tokenizer, record, max_length)


def _encode_classification(
    tokenizer: Any, record: Record, max_length: int, ids: dict[str, int]
) -> dict[str, Any]:
    if record.payload.label not in ids:
        raise StageError(
            f"record {record.id}: label {record.payload.label!r} is not in {sorted(ids)}"
        )
    enc = tokenizer(record.payload.input_text(), truncation=True, max_length=max_length)
    return {"input_ids": enc["input_ids"], "labels": ids[record.payload.label]}


class ClassificationCollator(NoisyCollator):
    """Pads inputs (perturbed with the same noise as SFT); labels are class indices."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        padded = super().__call__(
            # every key but the class label passes through (the edge-case flag, when set)
            [{**f, "labels": [0] * len(f["input_ids"])} for f in features]
        )
        padded["labels"] = torch.tensor([int(f["labels"]) for f in features])
        return padded


def classification_metrics(prediction: Any) -> dict[str, float]:
    from sklearn.metrics import f1_score

    logits, labels = prediction.predictions, prediction.label_ids
    predicted = np.argmax(logits[0] if isinstance(logits, tuple) else logits, axis=-1)
    return {
        "accuracy": float((predicted == labels).mean()),
        "macro_f1": float(f1_score(labels, predicted, average="macro")),
    }


TASKS: Registry[TaskSpec] = Registry("training task")
TASKS.register(
    "causal_lm", TaskSpec("CAUSAL_LM", _load_causal, _encode_causal, NoisyCollator, None)
)
TASKS.register(
    "classification",
    TaskSpec(
        "SEQ_CLS",
        _load_classifier,
        _encode_classification,
        ClassificationCollator,
        classification_metrics,
    ),
)
