"""The evaluate stage on hand-built runs (no training): class-level metrics, intervals and
the TF-IDF baseline for classifiers, ``evaluate.base: skip``, the forgetting probe for causal
LMs, and the warnings they raise.

Each run is a run store written here: mix tables of small in-memory record sets, a
``train/metrics.json`` and a "tuned" model folder made from the session's tiny model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from synthtune.config import load_recipe
from synthtune.context import StageContext
from synthtune.evaluate.forgetting import forgetting_summary
from synthtune.evaluate.stage import EvaluateStage
from synthtune.models import load_causal_lm, load_sequence_classifier
from synthtune.records import Message, Payload, Record
from synthtune.store import RunStore
from tests.conftest import write_recipe

LABELS = ["negative", "positive"]
WORDS = {"positive": ["surge", "rally", "soar"], "negative": ["plunge", "slump", "sink"]}


def _record(i: int, source: str, split: str) -> Record:
    label = LABELS[i % 2]
    text = f"Company {i} shares {WORDS[label][i % 3]} after the {split} news"
    record = Record.create(
        source, Payload(messages=[Message(role="user", content=text)], label=label)
    )
    record.lineage["split"] = split
    return record


def _run(tmp_path: Path, model_dir: Path, overrides: dict[str, Any], task: str) -> StageContext:
    recipe = load_recipe(
        write_recipe(tmp_path, {"train": {"task": task, "base": str(model_dir)}, **overrides})
    )
    store = RunStore(tmp_path / "run")
    tables = {
        "train": [_record(i, "real", "train") for i in range(24)]
        + [_record(i, "synthetic", "train") for i in range(100, 112)],
        "val": [_record(i, "real", "val") for i in range(200, 206)],
        "test": [_record(i, "real", "test") for i in range(300, 320)],
    }
    for split, records in tables.items():
        store.write_table("mix", split, records)
    store.write_json("train", "metrics.json", {"task": task, "labels": LABELS})
    return StageContext(recipe=recipe, store=store, quiet=True)


def _save_classifier(ctx: StageContext, model_dir: Path) -> None:
    """A "tuned" classifier that learned nothing: the base with the same seeded head."""
    torch.manual_seed(ctx.recipe.seed)
    model, tokenizer = load_sequence_classifier(str(model_dir), LABELS)
    model.save_pretrained(ctx.store.path("train", "adapter"))
    tokenizer.save_pretrained(ctx.store.path("train", "adapter"))


def test_classification_metrics_baseline_and_warnings(tmp_path: Path, tiny_model_dir: Path) -> None:
    ctx = _run(
        tmp_path, tiny_model_dir, {"evaluate": {"bootstrap": {"resamples": 200}}}, "classification"
    )
    _save_classifier(ctx, tiny_model_dir)
    summary = EvaluateStage().run(ctx)
    metrics = json.loads(ctx.store.path("evaluate", "metrics.json").read_text())
    cls = metrics["suites"]["classification"]
    assert cls["n"] == 20 and cls["labels"] == LABELS
    assert cls["bootstrap"] == {"resamples": 200, "confidence": 0.95}
    for name in ("base", "tuned", "baseline"):
        col = cls[name]
        assert set(col["per_class"]) == set(LABELS)
        assert sum(row["support"] for row in col["per_class"].values()) == 20
        assert sum(map(sum, col["confusion_matrix"])) == 20
        low, high = col["ci"]["macro_f1"]
        assert low <= col["macro_f1"] <= high
        assert {"precision", "recall", "f1"} == set(col["macro"]) == set(col["weighted"])
    # the same head and weights: base and tuned agree exactly
    assert cls["tuned"]["confusion_matrix"] == cls["base"]["confusion_matrix"]
    baseline = cls["baseline"]
    assert baseline["trained_on"] == "real" and baseline["train_rows"] == 24
    assert baseline["features"] == "word" and baseline["model"] == "logreg"
    assert baseline["accuracy"] >= 0.9  # the label follows from one word
    warnings = metrics["warnings"]
    assert any("no better than the base" in w for w in warnings), warnings
    assert any("below the TF-IDF baseline" in w for w in warnings), warnings
    assert any("only 20 labelled test records" in w for w in warnings), warnings
    # state.json keeps the headline numbers, metrics.json the tables
    assert "per_class" not in summary["classification"]["tuned"]
    assert summary["classification"]["tuned"]["macro_f1"] == cls["tuned"]["macro_f1"]


def test_base_skip_scores_no_base_and_baseline_can_be_switched_off(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    overrides = {"evaluate": {"base": "skip", "baseline": {"enabled": False}}}
    ctx = _run(tmp_path, tiny_model_dir, overrides, "classification")
    _save_classifier(ctx, tiny_model_dir)
    EvaluateStage().run(ctx)
    metrics = json.loads(ctx.store.path("evaluate", "metrics.json").read_text())
    cls = metrics["suites"]["classification"]
    assert metrics["base"] == "skip" and set(metrics["models"]) == {"tuned"}
    assert "base" not in cls and "baseline" not in cls and "tuned" in cls
    assert not any("base" in w and "no better" in w for w in metrics["warnings"])


def _save_causal(ctx: StageContext, model_dir: Path, sharpen: float) -> None:
    """A "tuned" causal LM: the base with its final norm scaled by ``sharpen``, which makes
    it over-confident on text it does not know (1.0: the base itself)."""
    model, tokenizer = load_causal_lm(str(model_dir), dtype="float32")
    with torch.no_grad():
        model.model.norm.weight.mul_(sharpen)
    model.save_pretrained(ctx.store.path("train", "adapter"))
    tokenizer.save_pretrained(ctx.store.path("train", "adapter"))


# measured on the session's tiny model: general perplexity 300 -> 544 when sharpened 8x
@pytest.mark.parametrize(("sharpen", "warned"), [(1.0, False), (8.0, True)])
def test_forgetting_probe_runs_unlisted_and_warns_on_a_sharp_rise(
    tmp_path: Path, tiny_model_dir: Path, sharpen: float, warned: bool
) -> None:
    overrides = {"evaluate": {"suites": ["perplexity"], "forgetting": {"samples": 24}}}
    ctx = _run(tmp_path, tiny_model_dir, overrides, "causal_lm")
    _save_causal(ctx, tiny_model_dir, sharpen)
    EvaluateStage().run(ctx)
    metrics = json.loads(ctx.store.path("evaluate", "metrics.json").read_text())
    probe = metrics["suites"]["forgetting"]
    assert probe["n"] == 24 and probe["max_ratio"] == 1.5
    assert probe["ratio"] == pytest.approx(probe["tuned"] / probe["base"], abs=1e-3)
    if warned:
        assert probe["ratio"] > 1.5 and probe["warning"] in metrics["warnings"]
    else:
        assert probe["ratio"] == pytest.approx(1.0, abs=1e-3) and probe["warning"] is None


def test_forgetting_can_be_switched_off(tmp_path: Path, tiny_model_dir: Path) -> None:
    overrides = {"evaluate": {"suites": ["perplexity"], "forgetting": {"enabled": False}}}
    ctx = _run(tmp_path, tiny_model_dir, overrides, "causal_lm")
    _save_causal(ctx, tiny_model_dir, 1.0)
    EvaluateStage().run(ctx)
    metrics = json.loads(ctx.store.path("evaluate", "metrics.json").read_text())
    assert set(metrics["suites"]) == {"perplexity"}


def test_forgetting_summary_without_a_base_has_no_ratio() -> None:
    out = forgetting_summary({"tuned": {"perplexity": 30.0}}, 10, 1.5)
    assert out["ratio"] is None and out["warning"] is None
    rose = forgetting_summary(
        {"base": {"perplexity": 10.0}, "tuned": {"perplexity": 16.0}}, 10, 1.5
    )
    assert rose["ratio"] == 1.6 and "1.6x" in rose["warning"]
