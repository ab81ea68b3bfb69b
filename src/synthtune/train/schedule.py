"""Resolve the training schedule from the recipe and the data size: a pure function.

``auto`` values become numbers here, once, before training: epochs (enough optimizer steps
for a small classification set), learning rates per task and method, warmup and logging
steps, and whether early stopping can decide on this validation set. The result is logged
and written to ``train/metrics.json`` (``resolved``) so a run says what it actually did.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from synthtune.config import TrainConfig

# epochs auto for causal_lm: the common SFT choice; more passes over a small chat set
# memorise the replies (and forget more of the base) without lowering validation loss.
CAUSAL_EPOCHS = 3.0
# epochs auto for classification/clip: at least this many passes, at most that many, in
# between as many as reach train.min_steps optimizer steps.
MIN_EPOCHS, MAX_EPOCHS = 3, 20
# logging_steps auto: about this many loss logs per run, 1 to 50 steps apart
LOGS_PER_RUN, MAX_LOGGING_STEPS = 25, 50


@dataclass(frozen=True)
class Schedule:
    """What a run does, every ``auto`` resolved; ``notes`` say why, for the log."""

    steps_per_epoch: int
    epochs: float
    max_steps: int | None
    total_steps: int
    lr_adapter: float
    lr_base: float
    warmup_steps: int
    logging_steps: int
    eval_strategy: str
    eval_steps: int | None
    early_stopping: bool
    early_stopping_metric: str | None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "notes"}


def auto_epochs(cfg: TrainConfig, steps_per_epoch: int) -> float:
    """``epochs: auto``: 3 for causal_lm; for classification/clip enough epochs to reach
    ``min_steps`` optimizer steps (3 to 20). On 25 rows per class the old 3 epochs underfit
    (issue 17: 0.743 accuracy, 0.946 with 10); bench/small_real_defaults.py measures it."""
    if cfg.task == "causal_lm":
        return CAUSAL_EPOCHS
    needed = math.ceil(cfg.min_steps / max(steps_per_epoch, 1))
    return float(min(MAX_EPOCHS, max(MIN_EPOCHS, needed)))


def _early_stopping(cfg: TrainConfig, n_val: int) -> tuple[bool, str]:
    es = cfg.early_stopping
    if cfg.eval_strategy == "no":
        return False, "early stopping off: eval_strategy is no (the last model is kept)"
    if es.enabled is False:
        return False, "early stopping off: early_stopping.enabled is false (last model kept)"
    if es.enabled is True:
        return True, f"early stopping on {cfg.early_stopping_metric()}, patience {es.patience}"
    if n_val < es.min_val_rows:
        return False, (
            f"early stopping off: the validation split has {n_val} rows, fewer than "
            f"early_stopping.min_val_rows ({es.min_val_rows}); the last model is kept"
        )
    return True, (
        f"early stopping on {cfg.early_stopping_metric()}, patience {es.patience} "
        f"({n_val} validation rows)"
    )


def resolve_schedule(cfg: TrainConfig, n_train: int, n_val: int) -> Schedule:
    """The schedule for ``n_train`` training and ``n_val`` validation examples."""
    steps_per_epoch = max(1, math.ceil(n_train / (cfg.batch_size * cfg.gradient_accumulation)))
    notes: list[str] = []
    epochs = auto_epochs(cfg, steps_per_epoch) if cfg.epochs == "auto" else float(cfg.epochs)
    if cfg.max_steps is not None:
        total = cfg.max_steps
        notes.append(f"max_steps {total} sets the length (epochs not used)")
    else:
        total = math.ceil(steps_per_epoch * epochs)
        if cfg.epochs == "auto":
            notes.append(
                f"epochs auto: {epochs:g} ({steps_per_epoch} steps per epoch, "
                f"{total} steps; min_steps {cfg.min_steps})"
            )
    adapter, base = cfg.learning_rates()
    warmup = (
        cfg.warmup_steps if cfg.warmup_steps is not None else math.ceil(cfg.warmup_ratio * total)
    )
    logging = (
        max(1, min(MAX_LOGGING_STEPS, total // LOGS_PER_RUN))
        if cfg.logging_steps == "auto"
        else cfg.logging_steps
    )
    stopping, why = _early_stopping(cfg, n_val)
    notes.append(why)
    return Schedule(
        steps_per_epoch=steps_per_epoch,
        epochs=epochs,
        max_steps=cfg.max_steps,
        total_steps=total,
        lr_adapter=adapter,
        lr_base=base,
        warmup_steps=warmup,
        logging_steps=logging,
        eval_strategy=cfg.eval_strategy,
        eval_steps=cfg.eval_steps if cfg.eval_strategy == "steps" else None,
        early_stopping=stopping,
        early_stopping_metric=cfg.early_stopping_metric() if stopping else None,
        notes=notes,
    )
