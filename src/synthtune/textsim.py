"""ROUGE-L similarity (Google's ``rouge-score``) with a tokenizer that also handles CJK.

rouge-score's default tokenizer keeps only ``[a-z0-9]`` and would see Chinese text as empty;
here Latin words stay words and each CJK character is a token, as in the Chinese ROUGE used by
CLUE and LCSTS evaluations.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W_]+", re.UNICODE)


def tokens(text: str) -> list[str]:
    """Lower-cased words for Latin script, single characters for CJK."""
    return _TOKEN.findall(text.lower())


class _MixedScriptTokenizer:
    def tokenize(self, text: str) -> list[str]:
        return tokens(text)


@functools.cache
def _scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], tokenizer=_MixedScriptTokenizer())


def rouge_l(a: str, b: str) -> float:
    return float(_scorer().score(a, b)["rougeL"].fmeasure)


def max_rouge_l(text: str, pool: Iterable[str]) -> tuple[float, str | None]:
    """Highest ROUGE-L F1 of ``text`` against ``pool`` and the closest item."""
    best, closest = 0.0, None
    for other in pool:
        score = rouge_l(text, other)
        if score > best:
            best, closest = score, other
    return best, closest
