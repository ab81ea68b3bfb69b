"""The quality tiers' per-shard work, as the executor ships it (``synthtune.executor``).

Every function here reads one shard of texts or payloads and returns one result per item, so
the stage gets the same list from any executor. Plain functions run as tasks; the ``*Worker``
dataclasses are factories: called once per process (a Ray actor, or this process), they load
their model and return the function that scores shards. Module-level and dataclasses so that
Ray can pickle them by reference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthtune.config.quality import HeuristicsConfig
from synthtune.ngram import NGramLM
from synthtune.quality import decontam, dedup
from synthtune.quality.heuristics import heuristic_reasons
from synthtune.records import Payload
from synthtune.rules import Rule, RuleOutcome, check_rules


def heuristics(items: Sequence[tuple[Payload, bool]], cfg: HeuristicsConfig) -> list[list[str]]:
    """Rejection reasons per (payload, schema declared)."""
    return [heuristic_reasons(payload, cfg, schema) for payload, schema in items]


def exact_keys(texts: Sequence[str]) -> list[str]:
    """What exact dedup groups on (``dedup.exact_key``)."""
    return [dedup.exact_key(t) for t in texts]


def minhash_signatures(texts: Sequence[str], params: tuple[int, int]) -> np.ndarray:
    """``dedup.minhash_signatures`` of a shard; ``params`` is (num_perm, k)."""
    num_perm, k = params
    return dedup.minhash_signatures(texts, num_perm, k)


def contaminated(texts: Sequence[str], shared: tuple[set[Any], int, int]) -> list[int]:
    """Shared test n-grams per text (``decontam.contaminated``)."""
    index, n, min_overlap = shared
    return decontam.contaminated(texts, index, n, min_overlap)


def ngram_perplexity(texts: Sequence[str], lm: NGramLM) -> list[float]:
    return lm.score(list(texts))


def rules(payloads: Sequence[Payload], rule_list: list[Rule]) -> list[list[RuleOutcome]]:
    return [check_rules(rule_list, payload) for payload in payloads]


@dataclass(frozen=True)
class PerplexityWorker:
    """Loads the scoring model once; the returned function scores a shard of texts."""

    model: str
    batch_size: int
    max_length: int
    stride: int | None

    def __call__(self) -> Callable[[Sequence[str]], list[float]]:
        from synthtune.models import load_causal_lm
        from synthtune.perplexity import PerplexityScorer

        model, tokenizer = load_causal_lm(self.model)
        scorer = PerplexityScorer(model, tokenizer, self.batch_size, self.max_length, self.stride)
        return scorer.score


@dataclass(frozen=True)
class EmbeddingWorker:
    """Loads the embedding model once; the returned function embeds a shard of texts."""

    model: str
    batch_size: int

    def __call__(self) -> Callable[[Sequence[str]], np.ndarray]:
        def embed(texts: Sequence[str]) -> np.ndarray:
            return dedup.embed_texts(texts, self.model, self.batch_size)

        embed([])  # load the model now, once per worker
        return embed
