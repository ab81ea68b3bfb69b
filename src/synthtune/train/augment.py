"""Noise augmentation of prompts, on the fly, per example per epoch.

With probability ``noise_prob`` an example's prompt (the user turns, never the reply the model
learns) is perturbed before tokenisation: a share ``token_rate`` of its units is swapped with
a neighbour, dropped, duplicated (insert) or replaced by another unit of the same text. Units
are words for Latin script and single characters for CJK, so Chinese text is perturbed
character by character rather than as broken byte-level BPE pieces. The noise of an example
depends only on (seed, epoch, index): a resumed run sees the noise an uninterrupted one did.
Plain-text records (no prompt: the whole text is the target) get token-level noise in the
collator instead, with labels kept clean.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from typing import Any

from torch.utils.data import Dataset

from synthtune.records import Message, Payload, Record

_PIECES = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\w+|\s+|[^\w\s]")
OPERATIONS = ("swap", "drop", "insert", "replace")


def perturb_text(text: str, rng: random.Random, rate: float) -> str:
    pieces = _PIECES.findall(text)
    # Numbers are left alone: they carry the facts a reply depends on (37.8 °C vs 38.5 °C).
    units = [
        i
        for i, p in enumerate(pieces)
        if not any(c.isdigit() for c in p) and (p[0].isalpha() or ord(p[0]) > 0x2FFF)
    ]
    if len(units) < 2:
        return text
    for position in rng.sample(units, max(1, int(len(units) * rate))):
        op = rng.choice(OPERATIONS)
        if op == "swap":
            other = units[(units.index(position) + 1) % len(units)]
            pieces[position], pieces[other] = pieces[other], pieces[position]
        elif op == "drop":
            pieces[position] = ""
        elif op == "insert":
            pieces[position] = (
                pieces[position]
                + (" " if pieces[position].isascii() else "")
                + pieces[rng.choice(units)]
            )
        else:
            pieces[position] = pieces[rng.choice(units)]
    return re.sub(r"[ \t]{2,}", " ", "".join(pieces)).strip()


def _rng(seed: int, epoch: int, index: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{epoch}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class PromptNoiseDataset(Dataset[dict[str, Any]]):
    """Records encoded on access; prompts perturbed with ``noise_prob`` per example per epoch."""

    def __init__(
        self,
        records: list[Record],
        encode: Callable[[Record], dict[str, Any]],
        noise_prob: float,
        rate: float,
        seed: int,
    ) -> None:
        self.records = records
        self.encode = encode
        self.noise_prob = noise_prob
        self.rate = rate
        self.seed = seed
        self.epoch = 0
        self._clean: dict[int, dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        has_prompt = any(m.role == "user" for m in record.payload.messages)
        if has_prompt and self.noise_prob:
            rng = _rng(self.seed, self.epoch, index)
            if rng.random() < self.noise_prob:
                return self.encode(self._noisy(record, rng))
        if index not in self._clean:
            self._clean[index] = self.encode(record)
        return self._clean[index]

    def _noisy(self, record: Record, rng: random.Random) -> Record:
        messages = [
            Message(role=m.role, content=perturb_text(m.content, rng, self.rate))
            if m.role == "user"
            else m
            for m in record.payload.messages
        ]
        payload = Payload(messages=messages, label=record.payload.label)
        return record.model_copy(update={"payload": payload})
