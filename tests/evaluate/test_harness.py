"""The optional lm-evaluation-harness suite: a recipe error without it, results with it."""

import sys
import types
from pathlib import Path
from typing import Any

import pytest

from synthtune.config import load_recipe
from synthtune.errors import RecipeError
from synthtune.evaluate.harness import measure
from synthtune.evaluate.stage import EvaluateStage
from synthtune.evaluate.suites import EvalInputs
from synthtune.pipeline import check_recipe
from tests.conftest import write_recipe


def test_lm_eval_without_the_harness_is_a_recipe_error_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # makes `import lm_eval` fail
    recipe = load_recipe(
        write_recipe(tmp_path, {"evaluate": {"suites": ["perplexity", "lm_eval"]}})
    )
    with pytest.raises(RecipeError) as err:
        check_recipe(recipe)
    assert "evaluate.suites" in str(err.value) and "pip install lm-eval" in str(err.value)
    assert "evaluate.lm_eval_tasks" in str(err.value)  # and no tasks were named


def test_lm_eval_runs_simple_evaluate_on_the_loaded_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, Any]] = []

    class FakeHFLM:
        def __init__(self, pretrained: Any, tokenizer: Any, batch_size: int) -> None:
            self.pretrained, self.batch_size = pretrained, batch_size

    def simple_evaluate(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return {"results": {"toy": {"alias": "toy", "acc,none": 0.5, "acc_stderr,none": "N/A"}}}

    harness = types.ModuleType("lm_eval")
    harness.simple_evaluate = simple_evaluate  # type: ignore[attr-defined]
    models = types.ModuleType("lm_eval.models")
    hf = types.ModuleType("lm_eval.models.huggingface")
    hf.HFLM = FakeHFLM  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lm_eval", harness)
    monkeypatch.setitem(sys.modules, "lm_eval.models", models)
    monkeypatch.setitem(sys.modules, "lm_eval.models.huggingface", hf)

    recipe = load_recipe(
        write_recipe(
            tmp_path,
            {"evaluate": {"suites": ["lm_eval"], "lm_eval_tasks": ["toy"], "batch_size": 4}},
        )
    )
    EvaluateStage().check(recipe)  # importable and tasks named: no error
    model = object()
    out = measure(model, None, EvalInputs(recipe=recipe, test=[]), "tuned")
    assert out == {"toy": {"acc,none": 0.5}}
    assert calls[0]["tasks"] == ["toy"] and calls[0]["limit"] == 100
    assert calls[0]["model"].pretrained is model and calls[0]["model"].batch_size == 4
