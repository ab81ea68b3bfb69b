"""Stratified sampling for human review: every stratum gets its share, at least one record."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from typing import Any

from synthtune.records import Record


def stratum_value(record: Record, key: str) -> Any:
    """``template`` -> lineage template; ``slots.gender`` -> a slot value; else lineage[key]."""
    if key.startswith("slots."):
        return record.lineage.get("slots", {}).get(key.removeprefix("slots."))
    return record.lineage.get(key)


def stratified_sample(
    records: list[Record], fraction: float, stratify_by: list[str], seed: int
) -> list[Record]:
    if fraction <= 0 or not records:
        return []
    strata: dict[tuple[Any, ...], list[Record]] = defaultdict(list)
    for record in records:
        strata[tuple(str(stratum_value(record, k)) for k in stratify_by)].append(record)
    rng = random.Random(seed)
    chosen: list[Record] = []
    for key in sorted(strata):
        members = sorted(strata[key], key=lambda r: r.id)
        k = min(len(members), max(1, math.ceil(fraction * len(members))))
        chosen.extend(rng.sample(members, k))
    return chosen
