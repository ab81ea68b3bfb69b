"""Evaluate stage: base vs tuned (vs quantized) on held-out data, one suite at a time.

Every model variant is loaded once and measured by every requested suite of its task
(perplexity, generation, rules, lm_eval, forgetting for causal LMs; classification for
classifiers); the suites' summaries go side by side into ``evaluate/metrics.json`` with their
warnings (docs/evaluation.md). Suites of the other task are listed under ``skipped`` with the
reason. ``evaluate.base: skip`` leaves the base model out.
"""

from __future__ import annotations

import gc
from typing import Any

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.errors import StageError
from synthtune.evaluate.prompts import eval_prompts
from synthtune.evaluate.suites import SUITES, Columns, EvalInputs
from synthtune.plugins import TASKS


def _runs_unlisted(name: str, recipe: Recipe) -> bool:
    auto = SUITES.get(name).auto
    return auto is not None and auto(recipe)


def requested(recipe: Recipe, task: str) -> tuple[list[str], dict[str, str]]:
    """``(suites to run, {skipped suite: why})``: the listed ones, after the suites of the
    task that run unlisted (``Suite.auto``: classification, images, forgetting)."""
    # a plugin's suite is imported only when the recipe names it, so only built-ins run unlisted
    auto = [
        n
        for n in SUITES.names()
        if not SUITES.is_plugin(n) and SUITES.get(n).task == task and _runs_unlisted(n, recipe)
    ]
    names = list(dict.fromkeys([*recipe.evaluate.suites, *auto]))
    run = [n for n in names if SUITES.get(n).task == task]
    skipped = {n: f"needs a {SUITES.get(n).task} model; train.task is {task}" for n in names}
    return run, {n: why for n, why in skipped.items() if n not in run}


# parts of a summary kept in metrics.json only
_BULKY = {
    "samples",
    "per_class",
    "confusion_matrix",
    "ci",
    "macro",
    "weighted",
    "labels",
    "bootstrap",
}


def _no_caveats(summary: dict[str, Any], recipe: Recipe) -> list[str]:
    return []


def headline(suites: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The suites' summaries for state.json, without the bulky parts (samples, per-class
    tables, confusion matrices, intervals), which stay in metrics.json."""

    def slim(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: slim(v) for k, v in value.items() if k not in _BULKY}
        return value

    return {name: slim(summary) for name, summary in suites.items()}


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
        spec = TASKS.get(train.get("task", recipe.train.task))
        if spec.eval_variants is None:
            raise StageError(f"evaluate: train.task {train.get('task')} has no evaluation hook")
        names, skipped = requested(recipe, spec.suite_kind)
        inputs = EvalInputs(
            recipe=recipe,
            test=test,
            labels=train.get("labels", []),
            train=ctx.store.read_table("mix", "train"),
            val=ctx.store.read_table("mix", "val"),
        )
        if {"generation", "rules"} & set(names):
            inputs.prompt_source, inputs.prompts = eval_prompts(
                recipe, test, cfg.generation_samples
            )
        variants, quantized = spec.eval_variants(ctx, inputs.labels)
        if cfg.base == "skip":
            variants = [v for v in variants if v.name != "base"]
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
        suites = {n: SUITES.get(n).summarize(columns[n], inputs) for n in names}
        results: dict[str, Any] = {
            "n_test": len(test),
            "models": {v.name: v.source for v in variants},
            "base": cfg.base,
            "quantized": quantized,
            "suites": suites,
            "skipped": skipped,
            "warnings": [
                warning
                for n, summary in suites.items()
                for warning in (SUITES.get(n).caveats or _no_caveats)(summary, recipe)
            ],
        }
        for warning in results["warnings"]:
            ctx.log(f"[yellow]evaluate: {warning}[/]")
        ctx.store.write_json(self.name, "metrics.json", results)
        return {"records_in": len(test), "records_out": len(test), **headline(suites)}
