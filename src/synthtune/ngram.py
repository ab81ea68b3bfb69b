"""A small n-gram language model for a fast first-pass fluency score (as CCNet uses KenLM).

Interpolated absolute discounting (Ney et al. 1994, the core of Kneser-Ney without the
continuation counts) over mixed-script tokens (words; single characters for CJK). Written by
hand: KenLM's trainer (``lmplz``) is a C++ binary that no PyPI package ships, and NLTK's
``nltk.lm`` scores in pure Python recursion, far too slow for a first pass. Counting and
scoring here are dictionary lookups, tens of times faster than a transformer forward pass.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence

from synthtune.textsim import tokens

BOS, EOS = "<s>", "</s>"


class NGramLM:
    def __init__(self, order: int = 3, discount: float = 0.75) -> None:
        if order < 1:
            raise ValueError("order must be at least 1")
        self.order = order
        self.discount = discount
        self.counts: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order)]
        self.context: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order)]
        self.followers: list[dict[tuple[str, ...], int]] = [{} for _ in range(order)]
        self.vocab: set[str] = set()

    def fit(self, texts: Iterable[str]) -> NGramLM:
        followers: list[defaultdict[tuple[str, ...], set[str]]] = [
            defaultdict(set) for _ in range(self.order)
        ]
        for text in texts:
            toks = [BOS] * (self.order - 1) + tokens(text) + [EOS]
            self.vocab.update(toks)
            for n in range(1, self.order + 1):
                for i in range(self.order - n, len(toks) - n + 1):
                    gram = tuple(toks[i : i + n])
                    self.counts[n - 1][gram] += 1
                    self.context[n - 1][gram[:-1]] += 1
                    followers[n - 1][gram[:-1]].add(gram[-1])
        self.followers = [{h: len(s) for h, s in f.items()} for f in followers]
        return self

    def _prob(self, history: tuple[str, ...], word: str) -> float:
        p = 1.0 / (len(self.vocab) + 1)  # uniform floor: unseen words keep a finite score
        for n in range(1, self.order + 1):
            h = history[len(history) - (n - 1) :] if n > 1 else ()
            total = self.context[n - 1].get(h, 0)
            if total == 0:
                continue
            count = self.counts[n - 1].get((*h, word), 0)
            backoff = self.discount * self.followers[n - 1].get(h, 0) / total
            p = max(count - self.discount, 0.0) / total + backoff * p
        return p

    def perplexity(self, text: str) -> float:
        toks = [BOS] * (self.order - 1) + tokens(text) + [EOS]
        logp = 0.0
        for i in range(self.order - 1, len(toks)):
            logp += math.log(self._prob(tuple(toks[i - self.order + 1 : i]), toks[i]))
        return math.exp(-logp / (len(toks) - self.order + 1))

    def score(self, texts: Sequence[str]) -> list[float]:
        return [self.perplexity(t) for t in texts]
