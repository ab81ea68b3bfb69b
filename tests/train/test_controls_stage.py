"""The train stage with the new controls, on a tiny classifier: evaluation off, an announced
early stop, loss logging cadence, and totals over a stopped-then-resumed run."""

import io
import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import synthtune.train.stage as stage
import synthtune.train.trainer as trainer_module
from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.records import Message, Payload, Record
from synthtune.store import RunStore

pytestmark = pytest.mark.slow


def _records(n: int) -> list[Record]:
    words = {"up": "surge rally climb", "down": "plunge slump sink"}
    return [
        Record.create(
            "real",
            Payload(
                messages=[Message(role="user", content=f"{words[label].split()[i % 3]} {i}")],
                label=label,
            ),
        )
        for i in range(n)
        for label in words
    ]


def _run(root: Path, base: Path, val: int, **train: Any) -> tuple[dict[str, Any], str]:
    recipe = Recipe.model_validate(
        {
            "name": "controls",
            "generate": {"templates": [{"id": "t", "prompt": "p", "response": "r"}]},
            "train": {
                "task": "classification",
                "base": str(base),
                "log_to": [],
                "batch_size": 4,
                **train,
            },
        }
    )
    store = RunStore(root)
    store.write_table("mix", "train", _records(16))
    store.write_table("mix", "val", _records(val)[: 2 * val])
    out = io.StringIO()
    ctx = StageContext(recipe, store, console=Console(file=out, width=200))
    stage.TrainStage().run(ctx)
    return json.loads(store.path("train", "metrics.json").read_text()), out.getvalue()


def test_evaluation_off_needs_no_validation_split(tiny_model_dir: Path, tmp_path: Path) -> None:
    metrics, log = _run(
        tmp_path, tiny_model_dir, val=0, eval_strategy="no", max_steps=6, logging_steps=2
    )
    assert metrics["global_step"] == 6 and metrics["resolved"]["total_steps"] == 6
    history = metrics["log_history"]
    assert [h["step"] for h in history if "loss" in h] == [2, 4, 6]
    assert not any(key.startswith("eval_") for h in history for key in h)
    assert metrics["early_stop"]["stopped"] is False
    assert "eval_strategy is no" in metrics["early_stop"]["reason"]
    assert metrics["tokens"] > 0 and metrics["tokens_per_second"] > 0
    assert 0 < metrics["train_seconds"] <= metrics["seconds"]
    assert metrics["samples"] == 6 * 4  # six steps of batch 4
    # MFU: FLOPs per token x tokens/s over the steps, against the matmul peak measured now
    expected = metrics["flops_per_token"] * metrics["tokens_per_second"]
    assert metrics["mfu"] == pytest.approx(expected / metrics["matmul_peak_gflops"] / 1e9, abs=6e-4)
    assert 0 < metrics["mfu"] < 1.5 and metrics["matmul_peak_gflops"] > 1
    assert "train: 6 steps" in log and "eval no" in log  # the resolved values are logged
    assert "train: 6/6 (100%)" in log  # a plain progress line (this console is no terminal)


def test_an_early_stop_is_announced_and_recorded(tiny_model_dir: Path, tmp_path: Path) -> None:
    # a learning rate too small to change a prediction: accuracy cannot improve
    metrics, log = _run(
        tmp_path,
        tiny_model_dir,
        val=8,
        eval_strategy="steps",
        eval_steps=1,
        max_steps=20,
        lr={"adapter": 1e-12, "base": 1e-12},
        early_stopping={"enabled": True, "patience": 2},
    )
    stop = metrics["early_stop"]
    assert stop["stopped"] is True and stop["step"] == 3 and metrics["global_step"] == 3
    assert "accuracy did not improve for 2 evaluations" in stop["reason"]
    assert stop["reason"] in log.replace("\n", "")
    evals = [h for h in metrics["log_history"] if "eval_accuracy" in h]
    assert len(evals) == 3 and all(0 <= h["eval_macro_f1"] <= 1 for h in evals)


def test_a_resumed_run_reports_totals_over_its_parts(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train = {"eval_strategy": "steps", "eval_steps": 2, "max_steps": 8, "logging_steps": 1}
    reference, _ = _run(tmp_path / "reference", tiny_model_dir, val=4, **train)

    class Interrupted(trainer_module.ProgressCallback):  # stops after the checkpoint of step 4
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            super().on_step_end(args, state, control, **kwargs)
            if state.global_step == 4:
                control.should_training_stop = True

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module, "ProgressCallback", Interrupted)
        first, _ = _run(tmp_path / "run", tiny_model_dir, val=4, **train)
    assert first["global_step"] == 4 and first["parts"] == 1
    resumed, log = _run(tmp_path / "run", tiny_model_dir, val=4, **train)
    assert "resuming from" in log
    assert resumed["global_step"] == 8 and resumed["parts"] == 2
    assert resumed["tokens"] == reference["tokens"]  # both parts, each step once
    assert resumed["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-4)
    assert resumed["train_seconds"] > first["train_seconds"]
