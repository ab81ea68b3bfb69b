"""Audio suite: audio classifiers (``train.task: audio``) on the held-out audio records.

Per class precision, recall and F1, macro-F1, accuracy and the confusion matrix (the images
suite's measures and summary, reused), for the base model zero-shot (the class prompts
against the untuned towers) and the fine-tuned one, side by side. For the contrastive
objective the tuned column is itself text-prompt classification: a clip's class is the
prompt it is closest to. ``local-tiny-audio`` is randomly initialised, so its base column is
chance level.

With ``evaluate.audio_heldout`` both models are also scored on a held-aside set that the
recipe's audio generator makes with another seed (``synthtune.audio.heldout``): new machines
and noise rather than siblings of the training clips. It is summarised the same way under
``heldout``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from synthtune import plugins
from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.errors import RecipeError
from synthtune.evaluate.caveats import classifier_caveats
from synthtune.evaluate.suites import Columns, EvalInputs, Suite
from synthtune.evaluate.variants import Loaded, ModelVariant
from synthtune.lazy import inference_mode
from synthtune.records import Record
from synthtune.vision.images_suite import image_scores, labelled_images, summarize

BATCH = 32
HELDOUT = "heldout"


@dataclass
class AudioEval:
    """What a variant is measured with: its ``AudioInputs`` and the held-aside records."""

    inputs: Any
    heldout: list[Record] = field(default_factory=list)


@inference_mode
def predict_clips(model: Any, inputs: Any, records: list[Record]) -> np.ndarray:
    """Predicted class ids of ``records`` (``inputs``: an ``AudioInputs``)."""
    import torch

    model.eval()
    out = []
    for start in range(0, len(records), BATCH):
        maps = np.stack([inputs.clip(r) for r in records[start : start + BATCH]])
        logits = model(input_features=torch.from_numpy(maps)).logits
        out.append(logits.argmax(dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def clip_scores(model: Any, inputs: Any, records: list[Record], labels: list[str]) -> dict:
    usable, truth = labelled_images(records, labels)  # the records with media and a label
    return image_scores(truth, predict_clips(model, inputs, usable), labels)


def measure(model: Any, found: AudioEval, inputs: EvalInputs, variant: str) -> dict[str, Any]:
    column = clip_scores(model, found.inputs, inputs.test, inputs.labels)
    if found.heldout:
        column[HELDOUT] = clip_scores(model, found.inputs, found.heldout, inputs.labels)
    return column


def summarize_audio(columns: Columns, inputs: EvalInputs) -> dict[str, Any]:
    """The images suite's summary of the test split; the held-aside columns, when measured,
    summarised alike under ``heldout`` (with the generator's seed)."""
    heldout = {name: c[HELDOUT] for name, c in columns.items() if HELDOUT in c}
    test = {name: {k: v for k, v in c.items() if k != HELDOUT} for name, c in columns.items()}
    out = summarize(test, inputs)
    if heldout:
        cfg = inputs.recipe.evaluate.audio_heldout
        matrix = next(iter(heldout.values()))["confusion_matrix"]
        out[HELDOUT] = {"n": int(np.sum(matrix)), "seed": cfg.seed if cfg else None, **heldout}
        if {"base", "tuned"} <= set(heldout):
            gain = heldout["tuned"]["macro_f1"] - heldout["base"]["macro_f1"]
            out[HELDOUT]["macro_f1_change"] = round(gain, 4)
    return out


def caveats(summary: dict[str, Any], recipe: Recipe) -> list[str]:
    found = classifier_caveats("audio", summary, recipe)
    if HELDOUT in summary:
        found += classifier_caveats("audio (held-aside)", summary[HELDOUT], recipe)
    return found


def check(recipe: Recipe) -> None:
    """``evaluate.audio_heldout`` needs an audio generator and a seed of its own."""
    from synthtune.config.generate import is_audio_backend

    cfg = recipe.evaluate.audio_heldout
    if cfg is None:
        return
    problems = []
    if recipe.generate is None or not is_audio_backend(recipe.generate.backend.type):
        problems.append(
            "evaluate.audio_heldout: needs a generate section with an audio backend "
            "(machine-sound, espeak), which makes the held-aside clips; remove it otherwise"
        )
    if cfg.seed == recipe.seed:
        problems.append(
            f"evaluate.audio_heldout.seed: {cfg.seed} is the recipe's seed, so the held-aside "
            "clips would repeat the generated ones; choose another seed"
        )
    if problems:
        raise RecipeError(str(recipe.source), problems)


def heldout_clips(ctx: StageContext) -> list[Record]:
    """The held-aside records ``evaluate.audio_heldout`` asks for (none when unset)."""
    cfg = ctx.recipe.evaluate.audio_heldout
    if cfg is None:
        return []
    from synthtune.audio.heldout import heldout_records

    records = heldout_records(ctx.store, ctx.recipe, cfg.n, cfg.seed)
    ctx.log(f"evaluate: {len(records)} held-aside clips (seed {cfg.seed})")
    return records


def audio_variants(ctx: StageContext, labels: list[str]) -> list[ModelVariant]:
    """Base zero-shot (the class prompts the train stage used) and the fine-tuned model."""
    import json

    from synthtune.audio.model import (
        TASK_FILE,
        AudioInputs,
        build_classifier,
        load_tuned_classifier,
    )
    from synthtune.model_names import resolve_name

    base_path = ctx.resolve_model(ctx.recipe.train.base)
    tuned_dir = ctx.store.path("train", "adapter")
    task = json.loads((tuned_dir / TASK_FILE).read_text(encoding="utf-8"))
    root = ctx.store.root
    heldout = heldout_clips(ctx)

    def base() -> Loaded:
        # zero-shot from the class prompts whatever the trained objective: a head objective's
        # fresh head would score chance and hide what the untuned towers already know
        model, tokenizer, features = build_classifier(
            base_path,
            resolve_name(task["text_model"]),
            task["labels"],
            task["prompts"],
            "contrastive",
        )
        return model, AudioEval(AudioInputs(tokenizer, features, root, task), heldout)

    def tuned() -> Loaded:
        model, inputs = load_tuned_classifier(tuned_dir, base_path, root)
        return model, AudioEval(inputs, heldout)

    return [ModelVariant("base", base_path, base), ModelVariant("tuned", str(tuned_dir), tuned)]


plugins.register_suite(
    "audio",
    Suite(
        task="audio",
        measure=measure,
        summarize=summarize_audio,
        check=check,
        auto=lambda _: True,  # an audio classifier is always measured by its own suite
        caveats=caveats,
    ),
)
