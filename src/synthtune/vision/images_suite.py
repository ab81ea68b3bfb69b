"""Images suite: CLIP classifiers (``train.task: clip``) on the held-out image records.

Per class precision, recall and F1, macro-F1, accuracy and the confusion matrix
(scikit-learn), for the base model zero-shot (the class prompts, no fine-tuning) and the
fine-tuned one, side by side. The base column is what the pre-trained CLIP already knows;
for ``local-tiny-clip``, which is randomly initialised, it is chance level.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from synthtune import plugins
from synthtune.context import StageContext
from synthtune.evaluate.caveats import classifier_caveats
from synthtune.evaluate.suites import Columns, EvalInputs, Suite
from synthtune.evaluate.variants import Loaded, ModelVariant
from synthtune.lazy import inference_mode
from synthtune.records import Record

BATCH = 32


def labelled_images(test: list[Record], labels: list[str]) -> tuple[list[Record], list[int]]:
    """The test records with an image and a label the model knows, and their label ids."""
    ids = {label: i for i, label in enumerate(labels)}
    usable = [r for r in test if r.payload.media and r.payload.label in ids]
    return usable, [ids[str(r.payload.label)] for r in usable]


@inference_mode
def predict_images(model: Any, inputs: Any, records: list[Record]) -> np.ndarray:
    """Predicted class ids of ``records`` (``inputs``: a ``ClipInputs``)."""
    import torch

    from synthtune.vision.clip_task import load_image

    model.eval()
    out = []
    for start in range(0, len(records), BATCH):
        images = [load_image(r, inputs.root) for r in records[start : start + BATCH]]
        pixels = torch.from_numpy(inputs.pixels(images))
        out.append(model(pixel_values=pixels).logits.argmax(dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def image_scores(truth: list[int], predicted: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class precision/recall/F1/support, confusion matrix (rows:
    true class, columns: predicted, in ``labels`` order)."""
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    index = list(range(len(labels)))
    precision, recall, f1, support = precision_recall_fscore_support(
        truth, predicted, labels=index, zero_division=0
    )
    per_class = {
        label: {
            "precision": round(float(precision[i]), 4),
            "recall": round(float(recall[i]), 4),
            "f1": round(float(f1[i]), 4),
            "support": int(support[i]),
        }
        for i, label in enumerate(labels)
    }
    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        # over the classes present in truth or predictions, as train and export compute it
        "macro_f1": round(float(f1_score(truth, predicted, average="macro", zero_division=0)), 4),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(truth, predicted, labels=index).tolist(),
    }


def measure(model: Any, inputs_encoder: Any, inputs: EvalInputs, variant: str) -> dict[str, Any]:
    records, truth = labelled_images(inputs.test, inputs.labels)
    return image_scores(truth, predict_images(model, inputs_encoder, records), inputs.labels)


def summarize(columns: Columns, inputs: EvalInputs) -> dict[str, Any]:
    out: dict[str, Any] = {"n": len(labelled_images(inputs.test, inputs.labels)[1])}
    out["labels"] = inputs.labels
    out.update(columns)
    if {"base", "tuned"} <= set(columns):
        gain = columns["tuned"]["macro_f1"] - columns["base"]["macro_f1"]
        out["macro_f1_change"] = round(gain, 4)
    return out


def image_variants(ctx: StageContext, labels: list[str]) -> list[ModelVariant]:
    """Base zero-shot (the class prompts the train stage used) and the fine-tuned model."""
    import json

    from synthtune.vision.clip_task import TASK_FILE, ClipInputs, build_classifier
    from synthtune.vision.clip_task import load_tuned_classifier as load_tuned

    base_path = ctx.resolve_model(ctx.recipe.train.base)
    tuned_dir = ctx.store.path("train", "adapter")
    task = json.loads((tuned_dir / TASK_FILE).read_text(encoding="utf-8"))
    root = ctx.store.root

    def base() -> Loaded:
        # zero-shot from the class prompts whatever the trained objective: a head objective's
        # fresh head would score chance and hide what the pre-trained CLIP already knows
        model, processor = build_classifier(
            base_path, task["labels"], task["prompts"], "contrastive"
        )
        return model, ClipInputs(processor, root, task)

    def tuned() -> Loaded:
        model, processor = load_tuned(tuned_dir, base_path)
        return model, ClipInputs(processor, root, task)

    return [ModelVariant("base", base_path, base), ModelVariant("tuned", str(tuned_dir), tuned)]


plugins.register_suite(
    "images",
    Suite(
        task="images",
        measure=measure,
        summarize=summarize,
        auto=lambda _: True,  # a CLIP classifier is always measured by its own suite
        caveats=lambda summary, recipe: classifier_caveats("images", summary, recipe),
    ),
)
