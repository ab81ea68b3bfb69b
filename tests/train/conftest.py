"""Shared pieces of the trainer tests: a tiny model with a Trainer's arguments, and the
gradients of one training step on token rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch


@pytest.fixture(scope="module")
def setup(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """(model, tokenizer, TrainingArguments) on local-tiny, built once per module."""
    from transformers import AutoTokenizer, TrainingArguments

    from synthtune.models import load_causal_lm

    model, _ = load_causal_lm(str(tiny_model_dir), dtype="float32")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    args = TrainingArguments(
        output_dir=str(tmp_path_factory.mktemp("unused")), use_cpu=True, report_to=[]
    )
    return model, tokenizer, args


def step_grads(
    setup: Any, rows: list[list[int]], extra: dict[str, Any] | None = None, adversarial: Any = None
) -> torch.Tensor:
    """All parameter gradients after one ``SynthtuneTrainer.training_step`` on ``rows``
    (labels = inputs), with ``extra`` batch keys (a flag or weight per row)."""
    from synthtune.train.trainer import SynthtuneTrainer

    model, _, args = setup
    trainer = SynthtuneTrainer(model=model, args=args, adversarial=adversarial)
    trainer.current_gradient_accumulation_steps = 1  # set by the training loop otherwise
    model.zero_grad(set_to_none=True)
    batch = {
        "input_ids": torch.tensor(rows),
        "labels": torch.tensor(rows),
        "attention_mask": torch.ones(len(rows), len(rows[0]), dtype=torch.long),
        **(extra or {}),
    }
    trainer.training_step(model, batch)
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
