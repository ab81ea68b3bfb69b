"""Batched perplexity of texts under a causal LM (fluency tier and evaluation).

Texts are sorted by token length and scored in batches with right padding, so padding waste
is small; each text's perplexity is ``exp(mean token NLL)`` over its own tokens only. Texts
longer than ``max_length`` are truncated, or, with a ``stride``, scored with the sliding
window of the transformers perplexity guide: windows of ``max_length`` tokens moving by
``stride``, each scoring only the tokens the previous window did not, with the rest as context.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from synthtune.lazy import inference_mode


@dataclass(frozen=True)
class _Segment:
    text: int  # index of the text it belongs to
    ids: list[int]
    score_from: int  # first position whose prediction counts (earlier ones are context)


class PerplexityScorer:
    """Score texts with a loaded model + tokenizer; ``score`` returns one value per text."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        batch_size: int = 16,
        max_length: int = 256,
        stride: int | None = None,
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.stride = stride

    def _encode(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        return [bos, *ids] if bos is not None else ids

    def _segments(self, index: int, ids: list[int]) -> list[_Segment]:
        if len(ids) <= self.max_length or self.stride is None:
            return [_Segment(index, ids[: self.max_length], 1)]
        segments, scored_to = [], 0
        for start in range(0, len(ids), self.stride):
            end = min(start + self.max_length, len(ids))
            # positions before `scored_to` were predicted by the previous window
            segments.append(_Segment(index, ids[start:end], max(1, scored_to - start)))
            scored_to = end
            if end == len(ids):
                break
        return segments

    @inference_mode
    def _batch_nll(self, batch: list[_Segment]) -> list[tuple[float, int]]:
        import torch
        import torch.nn.functional as F

        device = next(self.model.parameters()).device
        width = max(len(s.ids) for s in batch)
        pad = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        scored = torch.zeros((len(batch), width), dtype=torch.float)
        for row, seg in enumerate(batch):
            input_ids[row, : len(seg.ids)] = torch.tensor(seg.ids)
            mask[row, : len(seg.ids)] = 1
            scored[row, seg.score_from : len(seg.ids)] = 1
        input_ids, mask, scored = input_ids.to(device), mask.to(device), scored.to(device)
        logits = self.model(input_ids=input_ids, attention_mask=mask).logits.float()
        nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), input_ids[:, 1:], reduction="none")
        keep = scored[:, 1:]
        totals = (nll * keep).sum(dim=1)
        counts = keep.sum(dim=1)
        return [(float(t), int(c)) for t, c in zip(totals, counts, strict=True)]

    def nll(
        self, texts: Sequence[str], progress: Callable[[int], None] | None = None
    ) -> list[tuple[float, int]]:
        """(summed NLL, predicted tokens) per text, in input order."""
        segments = [s for i, t in enumerate(texts) for s in self._segments(i, self._encode(t))]
        order = sorted(range(len(segments)), key=lambda i: len(segments[i].ids))
        totals = [0.0] * len(texts)
        counts = [0] * len(texts)
        done_texts = 0
        for start in range(0, len(order), self.batch_size):
            chunk = [segments[i] for i in order[start : start + self.batch_size]]
            for seg, (total, count) in zip(chunk, self._batch_nll(chunk), strict=True):
                totals[seg.text] += total
                counts[seg.text] += count
            if progress:
                finished = min(len(texts), (start + len(chunk)) * len(texts) // len(segments))
                progress(finished - done_texts)
                done_texts = finished
        return list(zip(totals, counts, strict=True))

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
