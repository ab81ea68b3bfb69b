"""Batched prediction sorts texts by length for less padding and must give every text its own
prediction back, in input order, truncated at the length asked for."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from synthtune.classify import class_logits, predict


class _Tokenizer:
    """Character tokenizer: one id per character, 0 pads."""

    padding_side = "left"

    def __call__(self, texts: list[str], max_length: int, **_: Any) -> Any:
        rows = [[ord(c) for c in t][:max_length] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        mask = (ids != 0).long()
        return SimpleNamespace(to=lambda device: {"input_ids": ids, "attention_mask": mask})


class _LengthModel(torch.nn.Module):
    """Logits [0, n_tokens]: class 1 wins unless the text is empty; the logit shows the length
    the model saw, so order and truncation can be read back."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
        n = attention_mask.sum(dim=1).float()
        return SimpleNamespace(logits=torch.stack([torch.full_like(n, 0.5), n], dim=1))


def test_predictions_come_back_in_input_order_and_truncated() -> None:
    texts = ["a" * 9, "bb", "c" * 30, "d", "e" * 5]
    logits = class_logits(_LengthModel(), _Tokenizer(), texts, batch_size=2, max_length=12)
    assert logits[:, 1].tolist() == [9.0, 2.0, 12.0, 1.0, 5.0]
    assert predict(_LengthModel(), _Tokenizer(), texts, batch_size=2).tolist() == [1] * 5
