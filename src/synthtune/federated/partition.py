"""Deal one dataset's records to simulated clients: IID, or non-IID by a slot or the label.

Non-IID by key: the distinct values of the key are dealt round-robin (in sorted order, after a
seeded shuffle) to the clients, so each client sees only its own values - hospitals that each
see a different symptom mix. Records without the key are dealt IID.
"""

from __future__ import annotations

import random

from synthtune.errors import StageError
from synthtune.records import Record


def key_of(record: Record, by: str) -> str | None:
    """The record's value for ``by``: ``label`` or a slot name in ``lineage.slots``."""
    if by == "label":
        return record.payload.label
    value = record.lineage.get("slots", {}).get(by)
    return None if value is None else str(value)


def partition(records: list[Record], clients: int, by: str | None, seed: int) -> list[list[Record]]:
    """``clients`` disjoint lists covering ``records`` (see the module docstring)."""
    rng = random.Random(seed)
    parts: list[list[Record]] = [[] for _ in range(clients)]
    loose = list(records)
    if by is not None:
        values = sorted({v for r in records if (v := key_of(r, by)) is not None})
        if len(values) < clients:
            raise StageError(
                f"federated.partition.by {by!r}: {len(values)} distinct values for "
                f"{clients} clients; use fewer clients or another key"
            )
        rng.shuffle(values)
        owner = {value: i % clients for i, value in enumerate(values)}
        loose = []
        for record in records:
            value = key_of(record, by)
            if value is None:
                loose.append(record)
            else:
                parts[owner[value]].append(record)
    rng.shuffle(loose)
    for i, record in enumerate(loose):
        parts[i % clients].append(record)
    return parts
