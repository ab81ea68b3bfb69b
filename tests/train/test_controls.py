"""Training controls: class-level metrics with bounded memory, one-class refusal, the early
stop announcement, and run totals that survive a resume."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import EvalPrediction, TrainerControl, TrainerState

from synthtune.errors import StageError
from synthtune.records import Message, Payload, Record
from synthtune.train.tasks import argmax_logits, classification_metrics, labels_of
from synthtune.train.trainer import TOTALS_FILE, AnnouncedEarlyStopping, TrainMeter


def _record(text: str, label: str | None) -> Record:
    return Record.create(
        "real", Payload(messages=[Message(role="user", content=text)], label=label)
    )


def test_metrics_are_class_level_from_argmax_predictions() -> None:
    logits = torch.tensor([[2.0, 0.1, 0.0], [0.0, 3.0, 0.1], [0.0, 0.2, 1.0], [5.0, 0.0, 0.0]])
    labels = np.array([0, 1, 1, 0])
    predicted = argmax_logits(logits, torch.tensor(labels))
    assert predicted.shape == (4,)  # one id per example is all evaluation accumulates
    # a model returning (logits, hidden states) gives a tuple
    assert torch.equal(argmax_logits((logits, torch.zeros(4, 9)), None), predicted)
    scores = classification_metrics(EvalPrediction(predicted.numpy(), labels))
    assert scores["accuracy"] == pytest.approx(0.75)
    # macro-F1 over classes 0 (F1 1.0) and 1 (P 1, R 0.5 -> 0.667); 2 has no true examples
    assert scores["macro_f1"] == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    assert classification_metrics(EvalPrediction(logits.numpy(), labels)) == scores


def test_a_one_class_or_unlabelled_train_split_is_a_stage_error() -> None:
    with pytest.raises(StageError, match=r"1 label \('spam': 3 records\).*at least two"):
        labels_of([_record(f"t{i}", "spam") for i in range(3)])
    with pytest.raises(StageError, match="1 of 3 mix/train records have no label"):
        labels_of([_record("a", "x"), _record("b", "y"), _record("c", None)])
    assert labels_of([_record("a", "y"), _record("b", "x")]) == ["x", "y"]


def _stopper_state(best: float) -> TrainerState:
    state = TrainerState()
    state.best_metric, state.best_global_step = best, 4
    return state


def test_an_early_stop_is_announced_with_metric_patience_and_step() -> None:
    heard: list[str] = []
    stopper = AnnouncedEarlyStopping(patience=2, announce=heard.append)
    args = SimpleNamespace(metric_for_best_model="accuracy", greater_is_better=True)
    control = TrainerControl()
    state = _stopper_state(0.8)
    for step, accuracy in ((6, 0.7), (8, 0.75)):  # two evaluations below the best 0.8
        state.global_step = step
        stopper.on_evaluate(args, state, control, metrics={"eval_accuracy": accuracy})
    assert control.should_training_stop
    assert heard == [stopper.reason]
    assert "step 8" in stopper.reason and "accuracy" in stopper.reason
    assert "2 evaluations" in stopper.reason and "0.8 at step 4" in stopper.reason
    assert stopper.result() == {"stopped": True, "step": 8, "reason": stopper.reason}
    # the same plateau ending at the run's last step is no early stop
    last = AnnouncedEarlyStopping(patience=1, announce=heard.append)
    state.max_steps = state.global_step = 8
    last.on_evaluate(args, state, TrainerControl(), metrics={"eval_accuracy": 0.7})
    assert last.result()["stopped"] is False and len(heard) == 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_meter_times_training_steps_only_and_totals_survive_a_resume(tmp_path: Path) -> None:
    clock = Clock()
    meter = TrainMeter(clock=clock)
    meter.resume_from(None)
    args = SimpleNamespace(output_dir=str(tmp_path))
    state = TrainerState()
    for step in (1, 2):
        meter.on_step_begin(args, state, None)
        clock.now += 1.0  # a training step
        batch = {
            "input_ids": torch.ones(2, 5),
            "attention_mask": torch.tensor([[1] * 5, [1] * 3 + [0] * 2]),
        }
        meter.add(torch.tensor(0.5 * step), batch)
        meter.on_step_end(args, state, None)
        clock.now += 9.0  # evaluation and saving: not training time
    state.global_step = 2
    (tmp_path / "checkpoint-2").mkdir()
    meter.on_save(args, state, None)
    first = meter.totals(2)
    assert (first.train_seconds, first.wall_seconds, first.tokens) == (2.0, 20.0, 16)
    assert first.report()["train_loss"] == pytest.approx(0.75)
    assert first.report()["tokens_per_second"] == 8.0  # over training steps, not 20 s
    assert first.samples == 4 and first.report()["samples_per_second"] == 2.0
    saved = json.loads((tmp_path / "checkpoint-2" / TOTALS_FILE).read_text())
    assert saved["tokens"] == 16 and saved["parts"] == 1

    resumed = TrainMeter(clock=clock)
    resumed.resume_from(str(tmp_path / "checkpoint-2"))
    resumed.on_step_begin(args, state, None)
    clock.now += 2.0
    packed = {"input_ids": torch.ones(1, 4), "position_ids": torch.tensor([[0, 1, 0, 1]])}
    resumed.add(torch.tensor(2.0), packed)  # one packed row: no mask, two examples
    resumed.on_step_end(args, state, None)
    total = resumed.totals(3).report()
    assert total["parts"] == 2 and total["tokens"] == 20 and total["train_seconds"] == 4.0
    assert total["samples"] == 6
    assert total["train_loss"] == pytest.approx((0.5 + 1.0 + 2.0) / 3)
    assert total["seconds"] == pytest.approx(22.0)
