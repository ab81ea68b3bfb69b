"""lm_eval suite: lm-evaluation-harness tasks (``evaluate.lm_eval_tasks``) on each model via
``lm_eval.simple_evaluate`` with the harness's ``HFLM`` wrapper around the loaded model.

lm-evaluation-harness is optional and not a dependency: without it the recipe check fails
naming ``evaluate.suites``. ``limit`` is ``evaluate.generation_samples`` documents per task.
"""

from __future__ import annotations

import importlib
from typing import Any

from synthtune import plugins
from synthtune.config import Recipe
from synthtune.errors import RecipeError
from synthtune.evaluate.suites import EvalInputs, Suite, side_by_side


def _importable() -> bool:
    try:
        importlib.import_module("lm_eval")
    except ImportError:
        return False
    return True


def check(recipe: Recipe) -> None:
    problems = []
    if not _importable():
        problems.append(
            "evaluate.suites: `lm_eval` needs lm-evaluation-harness, which is not installed; "
            "`pip install lm-eval` or remove lm_eval from evaluate.suites"
        )
    if not recipe.evaluate.lm_eval_tasks:
        problems.append(
            "evaluate.lm_eval_tasks: name the harness tasks to run (e.g. [hellaswag]) "
            "for the lm_eval suite"
        )
    if problems:
        raise RecipeError(str(recipe.source), problems)


def numeric_results(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` from ``simple_evaluate``'s ``results``, numbers only
    (the harness mixes in aliases and strings such as ``"N/A"``)."""
    return {
        task: {
            k: round(float(v), 4)
            for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        }
        for task, metrics in results.items()
    }


def measure(model: Any, tokenizer: Any, inputs: EvalInputs, variant: str) -> dict[str, Any]:
    import lm_eval
    from lm_eval.models.huggingface import HFLM

    cfg = inputs.recipe.evaluate
    out = lm_eval.simple_evaluate(
        model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=cfg.batch_size),
        tasks=list(cfg.lm_eval_tasks),
        limit=cfg.generation_samples,
    )
    return numeric_results(out["results"])


plugins.register_suite(
    "lm_eval", Suite(task="causal", measure=measure, summarize=side_by_side, check=check)
)
