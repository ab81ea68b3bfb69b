"""Stratified sampling for human review: proportional allocation with a minimum per stratum."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable

from synthtune.records import Record, stratum_of, tier_outcome

__all__ = ["stratified_sample", "tier_outcome"]


def stratified_sample(
    records: list[Record],
    fraction: float,
    stratify_by: list[str],
    seed: int,
    min_per_stratum: int = 1,
    key: Callable[[Record], str] | None = None,
) -> list[Record]:
    """``ceil(fraction x size)`` per stratum, at least ``min_per_stratum`` (capped at its
    size); seeded and independent of input order. ``key`` gives a record's stratum instead
    of ``stratify_by``."""
    if fraction <= 0 or not records:
        return []
    strata: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        strata[key(record) if key else stratum_of(record, stratify_by)].append(record)
    rng = random.Random(seed)
    chosen: list[Record] = []
    for name in sorted(strata):
        members = sorted(strata[name], key=lambda r: r.id)
        k = min(len(members), max(min_per_stratum, math.ceil(fraction * len(members))))
        chosen.extend(rng.sample(members, k))
    return chosen
