"""Batched perplexity of texts under a causal LM (fluency tier and evaluation).

Texts are sorted by token length and scored in batches with right padding, so padding waste
is small; each text's perplexity is ``exp(mean token NLL)`` over its own tokens only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F


class PerplexityScorer:
    """Score texts with a loaded model + tokenizer; ``score`` returns one value per text."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 16, max_length: int = 256):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length

    def _encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, truncation=True, max_length=self.max_length)[
            "input_ids"
        ]
        if self.tokenizer.bos_token_id is not None and (
            not ids or ids[0] != self.tokenizer.bos_token_id
        ):
            ids = [self.tokenizer.bos_token_id, *ids][: self.max_length]
        return ids

    @torch.inference_mode()
    def _batch_nll(self, batch: list[list[int]]) -> list[tuple[float, int]]:
        device = next(self.model.parameters()).device
        width = max(len(ids) for ids in batch)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = 1
        input_ids, mask = input_ids.to(device), mask.to(device)
        logits = self.model(input_ids=input_ids, attention_mask=mask).logits.float()
        nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
        keep = mask[:, 1:].float()
        totals = (nll * keep).sum(dim=1)
        counts = keep.sum(dim=1)
        return [(float(t), int(c)) for t, c in zip(totals, counts, strict=True)]

    def nll(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> list[tuple[float, int]]:
        """(summed NLL, predicted tokens) per text, in input order."""
        encoded = [self._encode(t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]))
        out: list[tuple[float, int]] = [(0.0, 0)] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            for i, value in zip(chunk, self._batch_nll([encoded[i] for i in chunk]), strict=True):
                out[i] = value
            if progress:
                progress(len(chunk))
        return out

    def score(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> list[float]:
        return [
            math.exp(total / count) if count else float("inf")
            for total, count in self.nll(texts, progress)
        ]

    def corpus_perplexity(self, texts: Sequence[str]) -> float:
        """Token-weighted perplexity of a whole set (the number reported in evaluation)."""
        pairs = self.nll(texts)
        tokens = sum(c for _, c in pairs)
        return math.exp(sum(t for t, _ in pairs) / tokens) if tokens else float("inf")
