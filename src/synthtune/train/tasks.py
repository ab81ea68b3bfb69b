"""Task types of the train stage, registered by name: how a record becomes model inputs.

``causal_lm``: chat SFT with completion-only loss (``data.encode_record``). ``classification``:
the input text (the non-assistant turns, or the text itself) with the record's label as a
class index, trained through ``AutoModelForSequenceClassification``. ``clip``: image records
(image + caption + label) through CLIP (``synthtune.vision.clip_task``).
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synthtune.config import TrainConfig
from synthtune.errors import StageError
from synthtune.records import Record
from synthtune.registry import Registry
from synthtune.train.data import NoisyCollator, encode_record

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class TaskSetup:
    """What a task's loader may need besides the model path."""

    labels: list[str]
    config: TrainConfig
    root: Path  # the run directory (record media paths are relative to it)
    records: list[Record] = field(default_factory=list)  # the train split


@dataclass(frozen=True)
class TaskSpec:
    """``peft_task``: peft TaskType name, or None for a plain module (no task wrapper).
    ``labelled``: needs class labels (at least two). ``heads``: module names created for the
    task; they train at ``lr.adapter`` and are saved with adapters (peft modules_to_save).
    ``preprocess``: the Trainer's ``preprocess_logits_for_metrics``, run per eval batch."""

    peft_task: str | None
    load: Callable[[str, TaskSetup], tuple[Any, Any]]
    encode: Callable[[Any, Record, int, dict[str, int]], dict[str, Any]]
    collator: type[NoisyCollator]
    metrics: Callable[[Any], dict[str, float]] | None
    labelled: bool = False
    heads: tuple[str, ...] = ()
    preprocess: Callable[[Any, Any], Any] | None = None


def labels_of(records: list[Record]) -> list[str]:
    """The sorted class labels of the train split; a StageError when a record has no label
    or fewer than two classes remain (a one-class classifier scores 1.00 and learns nothing)."""
    unlabelled = [r.id for r in records if r.payload.label is None]
    if unlabelled:
        raise StageError(
            f"train: {len(unlabelled)} of {len(records)} mix/train records have no label "
            f"(first: {unlabelled[0]}); train.task classification and clip need one on every "
            "record: set `label:` on the templates, or mix.real.label_field"
        )
    counts = Counter(str(r.payload.label) for r in records)
    if len(counts) < 2:
        found = ", ".join(f"{label!r}: {n} records" for label, n in counts.items()) or "none"
        raise StageError(
            f"train: mix/train has {len(counts)} label ({found}); a classifier needs at least "
            "two classes: check mix.real.label_field and the templates' `label:`"
        )
    return sorted(counts)


def _load_causal(path: str, setup: TaskSetup) -> tuple[Any, Any]:
    from synthtune.models import load_causal_lm

    return load_causal_lm(path, dtype="float32")


def _load_classifier(path: str, setup: TaskSetup) -> tuple[Any, Any]:
    from synthtune.models import load_sequence_classifier

    return load_sequence_classifier(path, setup.labels)


def _load_clip(path: str, setup: TaskSetup) -> tuple[Any, Any]:
    from synthtune.vision.clip_task import load_clip_task

    return load_clip_task(path, setup)


def _encode_clip(
    inputs: Any, record: Record, max_length: int, ids: dict[str, int]
) -> dict[str, Any]:
    from synthtune.vision.clip_task import encode_clip

    return encode_clip(inputs, record, max_length, ids)


def _encode_causal(
    tokenizer: Any, record: Record, max_length: int, ids: dict[str, int]
) -> dict[str, Any]:
    return encode_record(tokenizer, record, max_length)


def _encode_classification(
    tokenizer: Any, record: Record, max_length: int, ids: dict[str, int]
) -> dict[str, Any]:
    enc = tokenizer(record.payload.input_text(), truncation=True, max_length=max_length)
    return {"input_ids": enc["input_ids"], "labels": label_id(record, ids)}


def label_id(record: Record, ids: dict[str, int]) -> int:
    if record.payload.label not in ids:
        raise StageError(
            f"record {record.id}: label {record.payload.label!r} is not in {sorted(ids)}"
        )
    return ids[record.payload.label]


class ClassificationCollator(NoisyCollator):
    """Pads inputs (perturbed with the same noise as SFT); labels are class indices."""

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        padded = super().__call__(
            # every key but the class label passes through (the edge-case flag, when set)
            [{**f, "labels": [0] * len(f["input_ids"])} for f in features]
        )
        padded["labels"] = torch.tensor([int(f["labels"]) for f in features])
        return padded


def argmax_logits(logits: Any, labels: Any) -> torch.Tensor:
    """``preprocess_logits_for_metrics``: each eval batch's class logits become predicted
    class ids, so evaluation keeps one integer per example, never the full logits."""
    return (logits[0] if isinstance(logits, tuple) else logits).argmax(dim=-1)


def classification_metrics(prediction: Any) -> dict[str, float]:
    """Class-level accuracy and macro-F1 (scikit-learn) of predicted class ids (or logits)."""
    from sklearn.metrics import accuracy_score, f1_score

    predicted, labels = prediction.predictions, prediction.label_ids
    predicted = predicted[0] if isinstance(predicted, tuple) else predicted
    if np.ndim(predicted) > np.ndim(labels):  # logits, when no preprocess ran
        predicted = np.argmax(predicted, axis=-1)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "macro_f1": float(f1_score(labels, predicted, average="macro", zero_division=0)),
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
        labelled=True,
        heads=("score", "classifier"),
        preprocess=argmax_logits,
    ),
)


class ClipCollator(NoisyCollator):
    """Stacks pixel values and pads captions. In training, with probability ``noise_prob``
    (``train.augment.noise_prob``) an image is flipped and/or turned by a multiple of 90
    degrees -- a defect's class does not depend on its orientation. As for text noise, the
    draw depends only on (seed, epoch, the image), so a resumed run sees the same images.
    Captions get no token noise: they are not what the model learns to write."""

    def __init__(self, inputs: Any, noise_prob: float, token_rate: float, seed: int) -> None:
        self.pad_id = inputs.processor.tokenizer.pad_token_id
        self.noise_prob = noise_prob
        self.seed = seed
        self.epoch = 0
        self.training = True

    def _augment(self, pixels: np.ndarray) -> np.ndarray:
        digest = hashlib.sha256(pixels[:, ::7, ::7].tobytes()).digest()[:8]
        rng = random.Random(f"{self.seed}:{self.epoch}:{digest.hex()}")
        if not self.training or rng.random() >= self.noise_prob:
            return pixels
        turned = np.rot90(pixels, k=rng.randrange(4), axes=(1, 2))
        return np.ascontiguousarray(turned[:, :, ::-1] if rng.random() < 0.5 else turned)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        import torch

        width = max(len(f["input_ids"]) for f in features)
        ids = [
            list(f["input_ids"]) + [self.pad_id] * (width - len(f["input_ids"])) for f in features
        ]
        mask = [[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]
        pixels = np.stack([self._augment(np.asarray(f["pixel_values"])) for f in features])
        return {
            "pixel_values": torch.from_numpy(pixels),
            "input_ids": torch.tensor(ids),
            "attention_mask": torch.tensor(mask),
            "labels": torch.tensor([int(f["labels"]) for f in features]),
        }


TASKS.register(
    "clip",
    TaskSpec(
        None,
        _load_clip,
        _encode_clip,
        ClipCollator,
        classification_metrics,
        labelled=True,
        heads=("classifier",),
        preprocess=argmax_logits,
    ),
)
