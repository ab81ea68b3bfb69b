"""Noise augmentation of prompts, on the fly, per example per epoch.

With probability ``noise_prob`` an example's prompt (the user turns, never the reply the model
learns) is perturbed before tokenisation: a share ``token_rate`` of its units is swapped with
a neighbour, dropped, duplicated (insert), replaced by another unit of the same text, or
replaced by a WordNet synonym (English words, :mod:`synthtune.synonyms`; a unit without one
gets one of the other operations). The operations and their weights are configurable. Units
are words for Latin script and single characters for CJK, so Chinese text is perturbed
character by character rather than as broken byte-level BPE pieces. Numbers are never
touched. The noise of an example depends only on (seed, epoch, index): a resumed run sees
the noise an uninterrupted one did. Plain-text records (no prompt: the whole text is the
target) get token-level noise in the collator instead, with labels kept clean.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

from torch.utils.data import Dataset

from synthtune.records import Message, Payload, Record
from synthtune.synonyms import load_synonyms

_PIECES = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|\w+|\s+|[^\w\s]")
# One function per operation: edit ``pieces`` at ``position`` and say whether it applied.
Operation = Callable[[list[str], list[int], int, random.Random], bool]


def _swap(pieces: list[str], units: list[int], position: int, rng: random.Random) -> bool:
    other = units[(units.index(position) + 1) % len(units)]
    pieces[position], pieces[other] = pieces[other], pieces[position]
    return True


def _drop(pieces: list[str], units: list[int], position: int, rng: random.Random) -> bool:
    pieces[position] = ""
    return True


def _insert(pieces: list[str], units: list[int], position: int, rng: random.Random) -> bool:
    space = " " if pieces[position].isascii() else ""
    pieces[position] = pieces[position] + space + pieces[rng.choice(units)]
    return True


def _replace(pieces: list[str], units: list[int], position: int, rng: random.Random) -> bool:
    pieces[position] = pieces[rng.choice(units)]
    return True


def _synonym(pieces: list[str], units: list[int], position: int, rng: random.Random) -> bool:
    word = pieces[position]
    choices = load_synonyms().synonyms(word)
    if not choices:
        return False
    pieces[position] = match_case(word, rng.choice(choices))
    return True


OPERATIONS: dict[str, Operation] = {
    "swap": _swap,
    "drop": _drop,
    "insert": _insert,
    "replace": _replace,
    "synonym": _synonym,
}
# Without explicit weights: the operations that need no optional package, equally likely.
DEFAULT_WEIGHTS: dict[str, float] = {"swap": 1.0, "drop": 1.0, "insert": 1.0, "replace": 1.0}


def match_case(word: str, replacement: str) -> str:
    """``replacement`` in the case pattern of ``word``: UPPER, Title or as the lexicon has it."""
    if len(word) > 1 and word.isupper():
        return replacement.upper()
    if word[:1].isupper():
        return replacement[:1].upper() + replacement[1:]
    return replacement


def perturb_text(
    text: str,
    rng: random.Random,
    rate: float,
    weights: Mapping[str, float] | None = None,
) -> str:
    """``text`` with a share ``rate`` of its units perturbed; numbers are never touched.

    ``weights`` maps operation names (:data:`OPERATIONS`) to relative weights (default
    :data:`DEFAULT_WEIGHTS`). An operation that does not apply to a unit (``synonym`` for a
    word the lexicon lacks) falls back to one of the other operations by their weights, and
    leaves the unit as it is when there is none. All randomness comes from ``rng``.
    """
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = sorted(set(weights) - set(OPERATIONS))
    if unknown:
        raise ValueError(f"unknown noise operations {unknown}; known: {sorted(OPERATIONS)}")
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
        _apply(pieces, units, position, rng, weights)
    return re.sub(r"[ \t]{2,}", " ", "".join(pieces)).strip()


def _apply(
    pieces: list[str],
    units: list[int],
    position: int,
    rng: random.Random,
    weights: dict[str, float],
) -> None:
    remaining = {name: w for name, w in weights.items() if w > 0}
    while remaining:
        name = rng.choices(list(remaining), weights=list(remaining.values()))[0]
        if OPERATIONS[name](pieces, units, position, rng):
            return
        del remaining[name]


def _rng(seed: int, epoch: int, index: int) -> random.Random:
    digest = hashlib.sha256(f"{seed}:{epoch}:{index}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class PromptNoiseDataset(Dataset[dict[str, Any]]):
    """Records encoded on access; prompts perturbed with ``noise_prob`` per example per epoch.

    ``weights`` are the operations' relative weights (see :func:`perturb_text`).
    """

    def __init__(
        self,
        records: list[Record],
        encode: Callable[[Record], dict[str, Any]],
        noise_prob: float,
        rate: float,
        seed: int,
        weights: Mapping[str, float] | None = None,
    ) -> None:
        self.records = records
        self.encode = encode
        self.noise_prob = noise_prob
        self.rate = rate
        self.seed = seed
        self.weights = weights
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
        return self._clean_encoding(index)

    def _clean_encoding(self, index: int) -> dict[str, Any]:
        if index not in self._clean:
            self._clean[index] = self.encode(self.records[index])
        return self._clean[index]

    def encode_all(self) -> None:
        """Encode every record's clean form now: grouped batching reads every example's
        length before the first step, and tokenising there would count as training time."""
        for index in range(len(self.records)):
            self._clean_encoding(index)

    def lengths(self) -> list[int]:
        """Every example's clean length in tokens, for length-grouped batching: reading the
        lengths through ``__getitem__`` would tokenise this epoch's noisy prompts once more
        just to measure them (0.6 s of 48 s on the peers' SFT workload)."""
        return [len(self._clean_encoding(i)["input_ids"]) for i in range(len(self.records))]

    def _noisy(self, record: Record, rng: random.Random) -> Record:
        messages = [
            Message(role=m.role, content=perturb_text(m.content, rng, self.rate, self.weights))
            if m.role == "user"
            else m
            for m in record.payload.messages
        ]
        payload = Payload(messages=messages, label=record.payload.label)
        return record.model_copy(update={"payload": payload})
