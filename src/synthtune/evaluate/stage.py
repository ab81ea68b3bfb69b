"""Evaluate stage: base vs tuned (vs quantized) on held-out data, one suite at a time.

Every model variant is loaded once and measured by every requested suite of its task
(perplexity, generation, rules, lm_eval for causal LMs; classification for classifiers);
the suites' summaries go side by side into ``evaluate/metrics.json`` (docs/evaluation.md).
Suites of the other task are listed under ``skipped`` with the reason.
"""

from __future__ import annotations

import gc
from typing import Any

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.evaluate import (
    classification,
    compliance,
    generation,
    harness,
    images,
    perplexity,
)
from synthtune.evaluate.prompts import eval_prompts
from synthtune.evaluate.suites import SUITES, Columns, EvalInputs
from synthtune.evaluate.variants import causal_variants, classification_variants

# importing the suite modules registers them
REGISTERED = (perplexity, classification, generation, compliance, harness, images)
# suite kind of the models each train.task makes (causal for the rest)
SUITE_TASK = {"classification": "classification", "clip": "images"}


def requested(recipe: Recipe, task: str) -> tuple[list[str], dict[str, str]]:
    """``(suites to run, {skipped suite: why})``; classifiers always get their suite of the
    same name (classification, images)."""
    names: list[str] = list(dict.fromkeys(recipe.evaluate.suites))
    if task in ("classification", "images") and task not in names:
        names.insert(0, task)
    run = [n for n in names if SUITES.get(n).task == task]
    skipped = {n: f"needs a {SUITES.get(n).task} model; train.task is {task}" for n in names}
    return run, {n: why for n, why in skipped.items() if n not in run}


class EvaluateStage:
    name = "evaluate"
    sections: tuple[str, ...] = ("evaluate",)

    def check(self, recipe: Recipe) -> None:
        for name in dict.fromkeys(recipe.evaluate.suites):
            suite = SUITES.get(name)
            if suite.check is not None:
                suite.check(recipe)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        recipe = ctx.recipe
        cfg = recipe.evaluate
        test = ctx.store.read_table("mix", "test")[: cfg.max_samples]
        train = ctx.store.read_json("train", "metrics.json")
        task = SUITE_TASK.get(train.get("task", ""), "causal")
        names, skipped = requested(recipe, task)
        inputs = EvalInputs(recipe=recipe, test=test, labels=train.get("labels", []))
        if {"generation", "rules"} & set(names):
            inputs.prompt_source, inputs.prompts = eval_prompts(
                recipe, test, cfg.generation_samples
            )
        if task == "classification":
            variants, quantized = classification_variants(ctx, inputs.labels)
        elif task == "images":
            variants = images.image_variants(ctx, inputs.labels)
            quantized = "ONNX int8: export/vision.json"
        else:
            variants, quantized = causal_variants(ctx)
        columns: dict[str, Columns] = {name: {} for name in names}
        for variant in variants:
            model, tokenizer = variant.load()
            for name in names:
                ctx.log(f"evaluate: {name} on {variant.name}")
                columns[name][variant.name] = SUITES.get(name).measure(
                    model, tokenizer, inputs, variant.name
                )
            del model
            gc.collect()
        results: dict[str, Any] = {
            "n_test": len(test),
            "models": {v.name: v.source for v in variants},
            "quantized": quantized,
            "suites": {n: SUITES.get(n).summarize(columns[n], inputs) for n in names},
            "skipped": skipped,
        }
        ctx.store.write_json(self.name, "metrics.json", results)
        shown = {
            n: {k: v for k, v in s.items() if k != "samples"} for n, s in results["suites"].items()
        }
        return {"records_in": len(test), "records_out": len(test), **shown}
