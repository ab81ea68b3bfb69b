"""One client's local work per round: the normal train stage started from the global adapter.

:class:`RoundTrainStage` is the train stage (same data, collators, trainer, early stopping,
checkpoints) with two changes made where the model is built: the adapter starts from the
weights the server sent, and with FedProx (Li et al., 2020) every trainable tensor's gradient
gets ``mu * (w - w_global)``, the gradient of the proximal term ``mu/2 ||w - w_global||^2``
(added as a tensor hook, so the trainer itself is untouched).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.federated.params import adapter_arrays, load_adapter_arrays
from synthtune.models import load_causal_lm
from synthtune.plugins import TASKS
from synthtune.records import Record
from synthtune.store import RunStore
from synthtune.train.methods import METHODS
from synthtune.train.stage import TrainStage


class RoundTrainStage(TrainStage):
    """The train stage writing to ``federated/<label>`` and starting from ``start``."""

    def __init__(self, label: str, start: list[np.ndarray] | None, mu: float = 0.0):
        self.name = f"federated/{label}"
        self.start = start
        self.mu = mu
        self.model: Any = None

    def build_model(
        self, ctx: StageContext, *args: Any
    ) -> tuple[Any, Any, str, list[dict[str, Any]]]:
        model, tokenizer, base_path, groups = super().build_model(ctx, *args)
        if self.start is not None:
            load_adapter_arrays(model, self.start)
        if self.mu > 0:
            # the Trainer divides the data loss by the accumulation steps per micro-batch and
            # the hook runs on every micro-batch: divide the proximal gradient alike
            mu = self.mu / ctx.recipe.train.gradient_accumulation
            for param in model.parameters():
                if param.requires_grad:
                    anchor = param.detach().clone()
                    param.register_hook(
                        lambda grad, p=param, a=anchor: grad + mu * (p.detach() - a)
                    )
        self.model = model
        return model, tokenizer, base_path, groups


def train_round(
    recipe: Recipe,
    run_dir: Path,
    round_number: int,
    start: list[np.ndarray] | None,
    mu: float = 0.0,
    label: str | None = None,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Run the train stage for one round on ``run_dir``; (new adapter arrays, summary).

    Its results go to ``federated/round-NNN`` (or ``federated/<label>``). The checkpoints are
    deleted once it finished: the next round starts from the server's adapter, not from them.
    """
    stage = RoundTrainStage(label or f"round-{round_number:03d}", start, mu)
    # a new shuffle and noise draw each round, the same on a re-run of the round
    seeded = recipe.model_copy(update={"seed": recipe.seed + round_number})
    ctx = StageContext(seeded, RunStore(run_dir), quiet=True)
    summary = stage.run(ctx)
    summary["train_loss"] = ctx.store.read_json(stage.name, "metrics.json")["train_loss"]
    shutil.rmtree(ctx.store.stage_dir(stage.name) / "checkpoints", ignore_errors=True)
    return adapter_arrays(stage.model), summary


def validation_loss(
    recipe: Recipe, base: str, arrays: list[np.ndarray] | None, records: list[Record]
) -> tuple[float, int]:
    """(mean loss, count) of the base + adapter ``arrays`` on ``records`` (causal LM).

    The mean is over target tokens and ``count`` is their number, so per-client results
    combine exactly: sum(loss * count) / sum(count) is the loss on the union of the records.
    """
    cfg = recipe.train
    task = TASKS.get(cfg.task)
    model, tokenizer = load_causal_lm(base, dtype="float32")
    model = METHODS.get(cfg.method).prepare(model, cfg)
    if arrays is not None:
        load_adapter_arrays(model, arrays)
    model.eval()
    collator = task.collator(tokenizer, 0.0, 0.0, recipe.seed)
    collator.training = False
    rows = [task.encode(tokenizer, r, cfg.max_length, {}) for r in records]
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), cfg.batch_size):
            batch = collator(rows[i : i + cfg.batch_size])
            loss = model(**batch).loss
            n = int((batch["labels"][:, 1:] != -100).sum())
            total += float(loss) * n
            count += n
    return (total / count if count else math.nan), count
