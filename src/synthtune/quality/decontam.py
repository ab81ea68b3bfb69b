"""Decontamination: records sharing long n-grams with the evaluation/test split are removed.

The n-grams are of mixed-script tokens (words, and single characters for CJK), the 13-gram
overlap test used for GPT-3 and Llama evaluations.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from synthtune.textsim import tokens


def ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    toks = tokens(text)
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def build_index(texts: Iterable[str], n: int) -> set[tuple[str, ...]]:
    index: set[tuple[str, ...]] = set()
    for text in texts:
        index |= ngrams(text, n)
    return index


def contaminated(
    texts: Sequence[str], index: set[tuple[str, ...]], n: int, min_overlap: int
) -> list[int]:
    """Counts of shared n-grams per text (0 when clean or below ``min_overlap``)."""
    out = []
    for text in texts:
        shared = len(ngrams(text, n) & index)
        out.append(shared if shared >= min_overlap else 0)
    return out
