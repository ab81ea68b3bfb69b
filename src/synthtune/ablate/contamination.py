"""Contamination guard: how much of the test split the synthetic training records could have
copied. Generation reads only the real train split, so any overlap here came from the
generator itself (a model that memorised the public test set, a template seeded with a test
sentence) and inflates the scores of every variant that trains on it.

The rule: a test row is contaminated when it shares at least one n-gram of ``textsim.tokens``
with any synthetic training record: 8-token n-grams, or 13 for CJK-dominant text (more than
half of its tokens CJK characters: one character carries less than one word, so a longer run
is needed for the same evidence). A row shorter than n counts when its whole token sequence
appears in a synthetic record. Exact duplicates (same token sequence) are counted apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from synthtune.records import Record
from synthtune.textsim import tokens

WORD_NGRAM = 8
CJK_NGRAM = 13
_CJK = re.compile(r"^[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]$")


def compared_text(record: Record) -> str:
    """What a model learns from: the input for a labelled record (the classifier's text),
    every turn otherwise."""
    return (
        record.payload.input_text() if record.payload.label is not None else record.payload.text()
    )


def ngram_size(words: Sequence[str]) -> int:
    cjk = sum(1 for w in words if _CJK.match(w))
    return CJK_NGRAM if words and cjk * 2 > len(words) else WORD_NGRAM


def _grams(words: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def overlap(synthetic: list[Record], test: list[Record]) -> dict[str, Any]:
    """``{test_rows, synthetic_rows, ngram_rows, ngram_fraction, exact_duplicates, rule}``."""
    synth_words = [tokens(compared_text(r)) for r in synthetic]
    exact = {tuple(w) for w in synth_words}
    index: dict[int, set[tuple[str, ...]]] = {}

    def grams_of_size(n: int) -> set[tuple[str, ...]]:
        if n not in index:
            index[n] = {g for words in synth_words for g in _grams(words, n)}
        return index[n]

    hits = duplicates = 0
    for record in test:
        words = tokens(compared_text(record))
        if not words:
            continue
        duplicates += tuple(words) in exact
        n = min(ngram_size(words), len(words))
        hits += any(g in grams_of_size(n) for g in _grams(words, n))
    return {
        "test_rows": len(test),
        "synthetic_rows": len(synthetic),
        "ngram_rows": hits,
        "ngram_fraction": round(hits / len(test), 4) if test else 0.0,
        "exact_duplicates": duplicates,
        "rule": f"{WORD_NGRAM}-token n-gram ({CJK_NGRAM}-character for CJK-dominant text)",
    }
