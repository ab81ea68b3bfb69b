"""The evaluation-suite registry and what every suite sees.

A suite measures one loaded model at a time (``measure``), so the stage loads each model
variant (base, tuned, quantized) once and runs every suite on it; ``summarize`` then puts the
per-variant columns side by side and adds the suite's own comparisons (e.g. % change).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from synthtune import plugins
from synthtune.config import Recipe
from synthtune.evaluate.prompts import EvalPrompt
from synthtune.records import Record

Columns = dict[str, dict[str, Any]]  # variant name -> that variant's measurements


@dataclass
class EvalInputs:
    """The data every suite reads; ``replies`` caches generated text per variant so that
    the generation and rules suites answer each prompt once per model."""

    recipe: Recipe
    test: list[Record]
    labels: list[str] = field(default_factory=list)
    train: list[Record] = field(default_factory=list)  # mix/train, for baselines
    val: list[Record] = field(default_factory=list)  # mix/val: baselines choose settings on it
    prompt_source: str = ""
    prompts: list[EvalPrompt] = field(default_factory=list)
    replies: dict[str, list[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Suite:
    """``task``: which models it measures, matched against ``TaskSpec.suite_kind`` (built in:
    ``causal`` LMs, sequence ``classification``, CLIP ``images``).
    ``measure(model, tokenizer, inputs, variant)`` returns one column; ``summarize(columns,
    inputs)`` returns the suite's entry in ``evaluate/metrics.json``; ``check(recipe)`` raises
    :class:`~synthtune.errors.RecipeError` before any work when the suite cannot run;
    ``auto(recipe)`` true runs the suite for models of its task without it being listed in
    ``evaluate.suites``; ``caveats(summary, recipe)`` returns warnings about the summary
    (e.g. the tuned model no better than the base)."""

    task: str  # the TaskSpec.suite_kind of the models it measures
    measure: Callable[[Any, Any, EvalInputs, str], dict[str, Any]]
    summarize: Callable[[Columns, EvalInputs], dict[str, Any]]
    check: Callable[[Recipe], None] | None = None
    auto: Callable[[Recipe], bool] | None = None
    caveats: Callable[[dict[str, Any], Recipe], list[str]] | None = None


SUITES = plugins.SUITES  # name -> Suite (register with plugins.register_suite)


def side_by_side(columns: Columns, inputs: EvalInputs) -> dict[str, Any]:
    """The default summary: the columns as they are."""
    return dict(columns)


def change_pct(new: float, old: float) -> float | None:
    return round(100 * (new - old) / old, 2) if old else None
