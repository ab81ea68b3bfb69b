"""Warnings about what a classifier suite's numbers mean (classification and images).

A suite's ``caveats(summary, recipe)`` returns sentences that go into
``evaluate/metrics.json`` (``warnings``), the console and the report. For classifiers: a
tuned model no better than its base or than the TF-IDF baseline, a test set too small for the
interval asked.
"""

from __future__ import annotations

from typing import Any

from synthtune.config import Recipe


def classifier_caveats(suite: str, found: dict[str, Any], recipe: Recipe) -> list[str]:
    """Warnings of one classifier suite's summary (``suite`` names it in each sentence)."""
    cfg = recipe.evaluate.bootstrap
    out: list[str] = []
    tuned, base, baseline = found.get("tuned"), found.get("base"), found.get("baseline")
    n = found.get("n", 0)
    if tuned is None:
        return out
    if base is not None and tuned["macro_f1"] <= base["macro_f1"]:
        out.append(
            f"{suite}: the tuned model (macro-F1 {tuned['macro_f1']:g}) is no better than the "
            f"base ({base['macro_f1']:g}): training did not learn the task; see the loss "
            "curve, raise epochs or the learning rate, or check the labels"
        )
    if baseline and "macro_f1" in baseline and tuned["macro_f1"] < baseline["macro_f1"]:
        out.append(
            f"{suite}: the tuned model (macro-F1 {tuned['macro_f1']:g}) is below the TF-IDF "
            f"baseline ({baseline['macro_f1']:g}, {baseline['features']} n-grams + "
            f"{baseline['model']}): the fine-tuned model has not earned its cost yet"
        )
    if n < cfg.min_test:
        out.append(
            f"{suite}: only {n} labelled test records (fewer than {cfg.min_test}): the "
            "metrics can change a lot with a few records; add test data"
        )
    interval = tuned.get("ci", {}).get("macro_f1")
    if interval and (interval[1] - interval[0]) / 2 > cfg.max_half_width:
        half = (interval[1] - interval[0]) / 2
        out.append(
            f"{suite}: the tuned macro-F1's {cfg.confidence:.0%} interval is "
            f"{interval[0]:g}-{interval[1]:g} (+/- {half:.2f}, wider than +/- "
            f"{cfg.max_half_width:g}): the test set is too small to tell models apart"
        )
    return out
