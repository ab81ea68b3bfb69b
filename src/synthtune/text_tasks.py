"""The built-in text tasks, ``causal_lm`` and ``classification``, registered like a plugin's.

Each :class:`~synthtune.train.tasks.TaskSpec` gathers what the stages need from one task:
loading and encoding (train), the suites and model variants of evaluation (evaluate), the
model export (export). The hooks import their stage's module when called, so validating a
recipe (which asks ``TASKS`` whether a task is labelled) stays free of torch.
"""

from __future__ import annotations

from typing import Any

from synthtune import plugins
from synthtune.config import TrainConfig
from synthtune.records import Record
from synthtune.train.data import NoisyCollator, PackedCollator, as_plain_text
from synthtune.train.tasks import (
    ClassificationCollator,
    TaskSpec,
    argmax_logits,
    classification_metrics,
    encode_causal,
    encode_classification,
    load_causal,
    load_classifier,
)


def _lm_format(records: list[Record], cfg: TrainConfig) -> list[Record]:
    """``train.lm_format: text``: every record is learned as its reply in plain text."""
    return [as_plain_text(r) for r in records] if cfg.lm_format == "text" else records


def _causal_variants(ctx: Any, labels: list[str]) -> tuple[list[Any], str]:
    from synthtune.evaluate.variants import causal_variants

    return causal_variants(ctx)


def _classifier_variants(ctx: Any, labels: list[str]) -> tuple[list[Any], str]:
    from synthtune.evaluate.variants import classification_variants

    return classification_variants(ctx, labels)


def _export_causal(ctx: Any, test: list[Record], train: dict[str, Any]) -> dict[str, Any]:
    from synthtune.export.models import export_causal_lm

    return export_causal_lm(ctx, test, train)


def _export_classifier(ctx: Any, test: list[Record], train: dict[str, Any]) -> dict[str, Any]:
    from synthtune.export.models import export_classifier

    return export_classifier(ctx, test, train)


plugins.register_task(
    "causal_lm",
    TaskSpec(
        "CAUSAL_LM",
        load_causal,
        encode_causal,
        NoisyCollator,
        None,
        prepare=_lm_format,
        prompt_noise=True,
        packed_collator=PackedCollator,
        learned_logits=True,
        suite_kind="causal",
        eval_variants=_causal_variants,
        export=_export_causal,
    ),
)
plugins.register_task(
    "classification",
    TaskSpec(
        "SEQ_CLS",
        load_classifier,
        encode_classification,
        ClassificationCollator,
        classification_metrics,
        labelled=True,
        heads=("score", "classifier"),
        preprocess=argmax_logits,
        suite_kind="classification",
        eval_variants=_classifier_variants,
        export=_export_classifier,
    ),
)
