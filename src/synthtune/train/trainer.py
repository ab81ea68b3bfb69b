"""A thin ``transformers.Trainer`` subclass and the callbacks the train stage uses."""

from __future__ import annotations

from typing import Any

from transformers import Trainer, TrainerCallback


class SynthtuneTrainer(Trainer):
    """Trainer whose noisy collator is switched off while evaluating (clean val loss)."""

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        collator = self.data_collator
        previous = getattr(collator, "training", None)
        if previous is not None:
            collator.training = False  # type: ignore[union-attr]
        try:
            return super().evaluate(*args, **kwargs)
        finally:
            if previous is not None:
                collator.training = previous  # type: ignore[union-attr]


class ProgressCallback(TrainerCallback):
    """Advance a rich progress bar per optimiser step (instead of tqdm / printed dicts)."""

    def __init__(self, advance: Any) -> None:
        self.advance = advance

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.advance(1)
