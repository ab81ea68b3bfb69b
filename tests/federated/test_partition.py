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


def test_simulation_partitions_mix_real_by_a_slot(tmp_path, tiny_model_dir) -> None:
    """Without federated.clients, the simulation deals mix.real: here the three hospitals'
    notes pooled in one file, dealt back by symptom (three symptoms per client)."""
    from synthtune.config import load_recipe
    from synthtune.federated.simulation import client_datasets
    from tests.federated.conftest import write_federated_recipe

    path = write_federated_recipe(
        tmp_path,
        tiny_model_dir,
        overrides={"federated": {"clients": [], "partition": {"clients": 3, "by": "symptom"}}},
    )
    pooled = "".join(p.read_text() for p in sorted((tmp_path / "data").glob("hospital-*.jsonl")))
    (tmp_path / "data" / "all.jsonl").write_text(pooled)
    text = path.read_text().replace("data/hospital-a.jsonl", "data/all.jsonl")
    path.write_text(text)
    parts = client_datasets(load_recipe(path))
    symptoms = [{r.lineage["slots"]["symptom"] for r in part} for part in parts]
    assert [len(s) for s in symptoms] == [3, 3, 3]
    assert len(set().union(*symptoms)) == 9
    assert sum(len(p) for p in parts) == len(pooled.splitlines())
