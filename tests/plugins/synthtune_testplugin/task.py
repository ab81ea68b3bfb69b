"""``train.task: last_turn``: a classifier of the LAST user turn only (the built-in
classification task reads every non-assistant turn), measured by its own suite kind."""

from __future__ import annotations

from typing import Any

from synthtune.plugins import register_task
from synthtune.records import Record
from synthtune.train.tasks import (
    ClassificationCollator,
    TaskSpec,
    argmax_logits,
    classification_metrics,
    label_id,
    load_classifier,
)

KIND = "last-turn"  # the suite kind: only suites with Suite.task == KIND measure this task


def encode(tokenizer: Any, record: Record, max_length: int, ids: dict[str, int]) -> dict[str, Any]:
    users = [m.content for m in record.payload.messages if m.role == "user"]
    enc = tokenizer(users[-1] if users else "", truncation=True, max_length=max_length)
    return {"input_ids": enc["input_ids"], "labels": label_id(record, ids)}


def variants(ctx: Any, labels: list[str]) -> tuple[list[Any], str]:
    from synthtune.evaluate.variants import classification_variants

    return classification_variants(ctx, labels)


register_task(
    "last_turn",
    TaskSpec(
        "SEQ_CLS",
        load_classifier,
        encode,
        ClassificationCollator,
        classification_metrics,
        labelled=True,
        heads=("score", "classifier"),
        preprocess=argmax_logits,
        suite_kind=KIND,
        eval_variants=variants,
        export=None,  # datasets only: nothing to merge
    ),
)
