"""The schedule resolved from the recipe and the data size, and the TrainingArguments it makes."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from synthtune.config import Recipe, TrainConfig
from synthtune.train.schedule import resolve_schedule
from synthtune.train.stage import training_arguments


def _recipe(**train: object) -> Recipe:
    return Recipe.model_validate(
        {
            "name": "t",
            "generate": {"templates": [{"id": "t", "prompt": "p", "response": "r"}]},
            "train": {"task": "classification", **train},
        }
    )


def test_epochs_auto_reaches_min_steps_on_a_small_classification_set() -> None:
    cfg = TrainConfig(task="classification")
    small = resolve_schedule(cfg, n_train=200, n_val=0)  # 25 steps per epoch
    assert (small.steps_per_epoch, small.epochs, small.total_steps) == (25, 20.0, 500)
    assert any("epochs auto: 20" in note for note in small.notes)
    assert resolve_schedule(cfg, n_train=400, n_val=0).epochs == 10.0  # 50 steps per epoch
    assert resolve_schedule(cfg, n_train=20_000, n_val=0).epochs == 3.0  # already enough
    assert resolve_schedule(cfg, n_train=16, n_val=0).epochs == 20.0  # capped
    assert resolve_schedule(TrainConfig(), n_train=200, n_val=0).epochs == 3.0  # causal_lm
    assert resolve_schedule(TrainConfig(task="classification", epochs=2), 200, 0).epochs == 2.0


def test_learning_rates_auto_depend_on_task_and_explicit_ones_win() -> None:
    assert TrainConfig(task="classification", method="full").learning_rates() == (1e-3, 1e-4)
    assert TrainConfig(method="full").learning_rates() == (1e-3, 1e-5)
    explicit = TrainConfig(task="classification", lr={"base": 2e-5, "adapter": 3e-3})
    assert explicit.learning_rates() == (3e-3, 2e-5)
    with pytest.raises(ValidationError):
        TrainConfig(lr={"base": 0})


def test_max_steps_warmup_and_logging_steps(tmp_path: Path) -> None:
    schedule = resolve_schedule(
        TrainConfig(task="classification", max_steps=40, warmup_steps=7), 200, 0
    )
    assert schedule.total_steps == 40 and schedule.warmup_steps == 7
    args = training_arguments(_recipe(max_steps=40, warmup_steps=7), str(tmp_path), schedule)
    assert args.max_steps == 40 and args.warmup_steps == 7
    ratio = resolve_schedule(TrainConfig(task="classification", warmup_ratio=0.1), 200, 0)
    assert ratio.warmup_steps == 50  # 10 % of 500
    # about 25 loss logs per run: a 500-step run logs every 20 steps, not every 62
    assert ratio.logging_steps == 20
    assert resolve_schedule(TrainConfig(), 8, 0).logging_steps == 1
    assert resolve_schedule(TrainConfig(epochs=100), 8000, 0).logging_steps == 50
    assert resolve_schedule(TrainConfig(logging_steps=3), 8000, 0).logging_steps == 3


def test_early_stopping_needs_a_validation_set_large_enough_to_decide() -> None:
    cfg = TrainConfig(task="classification")
    small = resolve_schedule(cfg, n_train=200, n_val=18)
    assert not small.early_stopping
    assert "18 rows" in small.notes[-1] and "min_val_rows (50)" in small.notes[-1]
    large = resolve_schedule(cfg, n_train=200, n_val=60)
    assert large.early_stopping and large.early_stopping_metric == "accuracy"
    forced = TrainConfig(task="classification", early_stopping={"enabled": True})
    assert resolve_schedule(forced, 200, 18).early_stopping
    off = TrainConfig(task="classification", early_stopping={"enabled": False})
    assert not resolve_schedule(off, 200, 600).early_stopping
    threshold = TrainConfig(task="classification", early_stopping={"min_val_rows": 10})
    assert resolve_schedule(threshold, 200, 18).early_stopping
    causal = resolve_schedule(TrainConfig(), 200, 600)
    assert causal.early_stopping_metric == "eval_loss"


def test_evaluation_strategy_no_needs_no_validation_and_keeps_the_last_model(
    tmp_path: Path,
) -> None:
    recipe = _recipe(eval_strategy="no")
    schedule = resolve_schedule(recipe.train, n_train=200, n_val=0)
    assert not schedule.early_stopping and "eval_strategy is no" in schedule.notes[-1]
    args = training_arguments(recipe, str(tmp_path), schedule)
    assert args.eval_strategy == "no" and not args.load_best_model_at_end
    assert args.metric_for_best_model is None
    with pytest.raises(ValidationError, match=r"early_stopping\.enabled: true needs"):
        TrainConfig(eval_strategy="no", early_stopping={"enabled": True})


def test_early_stopping_metric_reaches_the_trainer_arguments(tmp_path: Path) -> None:
    recipe = _recipe(early_stopping={"metric": "macro_f1"}, weight_decay=0.1)
    schedule = resolve_schedule(recipe.train, n_train=200, n_val=100)
    args = training_arguments(recipe, str(tmp_path), schedule)
    assert args.load_best_model_at_end and args.metric_for_best_model == "macro_f1"
    assert args.greater_is_better and args.weight_decay == 0.1
    small = resolve_schedule(recipe.train, n_train=200, n_val=10)  # tracked, not restored
    args = training_arguments(recipe, str(tmp_path), small)
    assert not args.load_best_model_at_end and args.metric_for_best_model == "macro_f1"
    with pytest.raises(ValidationError, match="classification and clip only"):
        TrainConfig(early_stopping={"metric": "accuracy"})


def test_eval_every_is_an_alias_of_eval_steps() -> None:
    cfg = TrainConfig(eval_every=5)
    assert (cfg.eval_strategy, cfg.eval_steps, cfg.eval_every) == ("steps", 5, None)
    assert TrainConfig.model_validate(cfg.model_dump()).eval_steps == 5  # round trip
    with pytest.raises(ValidationError, match="needs eval_steps"):
        TrainConfig(eval_strategy="steps")
    with pytest.raises(ValidationError, match="alias"):
        TrainConfig(eval_every=5, eval_steps=6)


def test_weight_decay_reaches_the_optimizer_groups(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    from synthtune.train.param_groups import param_groups

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    groups = param_groups(model, TrainConfig(method="full", weight_decay=0.2))
    assert {g["weight_decay"] for g in groups} == {0.0, 0.2}  # 1-D tensors never decay
