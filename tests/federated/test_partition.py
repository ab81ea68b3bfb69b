"""Dealing one dataset to simulated clients: IID covers everything once; non-IID by a slot
gives every slot value to exactly one client."""

from __future__ import annotations

import pytest

from synthtune.errors import StageError
from synthtune.federated.partition import partition
from synthtune.records import Message, Payload, Record


def _records(n: int) -> list[Record]:
    symptoms = ["fever", "cough", "rash", "dizziness", "back pain", "chest pain"]
    return [
        Record.create(
            "real",
            Payload(messages=[Message(role="assistant", content=f"note {i}")], label=f"L{i % 2}"),
            lineage={"slots": {"symptom": symptoms[i % len(symptoms)]}},
        )
        for i in range(n)
    ]


def test_iid_partition_is_disjoint_complete_and_balanced() -> None:
    records = _records(60)
    parts = partition(records, 3, None, seed=1)
    ids = [r.id for part in parts for r in part]
    assert sorted(ids) == sorted(r.id for r in records)
    assert [len(p) for p in parts] == [20, 20, 20]
    assert parts == partition(records, 3, None, seed=1)  # seeded


def test_non_iid_partition_gives_each_slot_value_to_one_client() -> None:
    parts = partition(_records(60), 3, "symptom", seed=1)
    owners: dict[str, set[int]] = {}
    for index, part in enumerate(parts):
        for record in part:
            owners.setdefault(record.lineage["slots"]["symptom"], set()).add(index)
    assert len(owners) == 6 and all(len(o) == 1 for o in owners.values())
    assert all(len({r.lineage["slots"]["symptom"] for r in part}) == 2 for part in parts)
    by_label = partition(_records(60), 2, "label", seed=1)
    assert [{r.payload.label for r in part} for part in by_label] in (
        [{"L0"}, {"L1"}],
        [{"L1"}, {"L0"}],
    )


def test_too_few_values_for_the_clients_is_an_error() -> None:
    with pytest.raises(StageError, match="distinct values"):
        partition(_records(10), 3, "label", seed=1)
