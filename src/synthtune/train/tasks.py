"""The task contract (:class:`TaskSpec`) and the pieces text tasks are built from.

A task says how a record becomes model inputs and what the later stages do with the model it
makes: which evaluation suites measure it, how its variants load for evaluation, how export
writes it. Stages read these hooks from ``plugins.TASKS``; none of them switches on a task's
name. The built-in tasks are assembled in :mod:`synthtune.text_tasks` (``causal_lm``:
chat SFT with completion-only loss; ``classification``: the input text with the record's label
as a class index through ``AutoModelForSequenceClassification``) and
:mod:`synthtune.vision.clip_task` (``clip``); a plugin registers its own with
``plugins.register_task``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from synthtune.config import TrainConfig
from synthtune.errors import StageError
from synthtune.records import Record
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
    load_kwargs: dict[str, Any] = field(default_factory=dict)  # the method's (e.g. 4-bit)


# Hooks of the later stages; ``ctx`` is the stage's StageContext.
EvalVariants = Callable[[Any, list[str]], tuple[list[Any], str]]
ExportModel = Callable[[Any, list[Record], dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class TaskSpec:
    """``peft_task``: peft TaskType name, or None for a plain module (no task wrapper).
    ``labelled``: needs class labels (at least two). ``heads``: module names created for the
    task; they train at ``lr.adapter`` and are saved with adapters (peft modules_to_save).
    ``preprocess``: the Trainer's ``preprocess_logits_for_metrics``, run per eval batch.

    Train-stage hooks: ``prepare`` rewrites the train/val records before encoding (e.g.
    ``train.lm_format: text``); ``prompt_noise`` trains through the prompt-noise dataset
    (``train.augment``, re-drawn each epoch); ``packed_collator`` is used for ``batching:
    packed`` (None: the task's collator); ``adversarial`` false refuses ``train.adversarial``
    (FGM/PGD perturb token embeddings); ``token_flops`` false leaves MFU out of the train
    metrics (a model whose compute is not per text token, e.g. CLIP's image tower);
    ``learned_logits``: a causal LM whose training loss needs the LM head only at positions
    whose next token is learned (``fast_ops.learned_positions_loss``).
    Later stages: ``suite_kind`` is the ``Suite.task`` of the evaluation suites that measure
    this task's models; ``eval_variants(ctx, labels)`` returns ``(model variants, quantized
    note)`` for the evaluate stage; ``export(ctx, test_records, train_metrics)`` writes the
    model under export/ and returns its report (None: export writes datasets only)."""

    peft_task: str | None
    load: Callable[[str, TaskSetup], tuple[Any, Any]]
    encode: Callable[[Any, Record, int, dict[str, int]], dict[str, Any]]
    collator: type[NoisyCollator]
    metrics: Callable[[Any], dict[str, float]] | None
    labelled: bool = False
    heads: tuple[str, ...] = ()
    preprocess: Callable[[Any, Any], Any] | None = None
    prepare: Callable[[list[Record], TrainConfig], list[Record]] | None = None
    prompt_noise: bool = False
    packed_collator: type[NoisyCollator] | None = None
    adversarial: bool = True
    token_flops: bool = True
    learned_logits: bool = False
    suite_kind: str = "causal"
    eval_variants: EvalVariants | None = None
    export: ExportModel | None = None


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


def load_causal(path: str, setup: TaskSetup) -> tuple[Any, Any]:
    from synthtune.models import load_causal_lm

    return load_causal_lm(path, dtype="float32", **setup.load_kwargs)


def load_classifier(path: str, setup: TaskSetup) -> tuple[Any, Any]:
    from synthtune.models import load_sequence_classifier

    return load_sequence_classifier(path, setup.labels)


def encode_causal(
    tokenizer: Any, record: Record, max_length: int, ids: dict[str, int]
) -> dict[str, Any]:
    return encode_record(tokenizer, record, max_length)


def encode_classification(
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
