import os
from pathlib import Path

import pytest

from synthtune.records import Message, Payload, Record
from synthtune.store import RunStore, atomic_write_text


def _records(n: int, start: int = 0) -> list[Record]:
    return [
        Record.create(
            "synthetic",
            Payload(messages=[Message(role="assistant", content=f"text {i}")]),
            lineage={"i": i, "slots": {"age": i}},
            quality={"perplexity": 1.5},
        )
        for i in range(start, start + n)
    ]


def test_records_round_trip_through_parquet(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    records = _records(3)
    records[1].reject("rules: x")
    store.write_table("mix", "train", records)
    assert store.read_table("mix", "train") == records


def test_shards_append_and_never_overwrite(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    first = store.append_shard("generate", _records(2))
    second = store.append_shard("generate", _records(2, start=2))
    assert (first.name, second.name) == ("shard-00000.parquet", "shard-00001.parquet")
    assert [r.lineage["i"] for r in store.read_shards("generate")] == [0, 1, 2, 3]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "state.json"
    atomic_write_text(target, "old")

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_stage_completion_needs_manifest_and_matching_fingerprint(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    assert not store.is_complete("mix", "fp1")
    store.mark_complete("mix", "fp1", {"records_out": 3})
    assert store.is_complete("mix", "fp1")
    assert not store.is_complete("mix", "fp2")
    (tmp_path / "mix" / "manifest.json").unlink()
    assert not store.is_complete("mix", "fp1")
    store.invalidate("mix")
    assert store.stage_state("mix") is None and not (tmp_path / "mix").exists()


@pytest.mark.parametrize(
    "damage",
    [
        b'{"stages": {"generate": {"status": "compl',
        b"[]",
        b"\x00\xff\xfe garbage",
        b'{"stages": 3}',
    ],
    ids=["truncated", "list", "binary", "wrong-shape"],
)
def test_a_damaged_state_is_rebuilt_from_the_manifests(tmp_path: Path, damage: bytes) -> None:
    store = RunStore(tmp_path)
    store.mark_complete("generate", "fp-g", {"records_out": 5}, seconds=1.5)
    store.mark_complete("quality", "fp-q", {"records_out": 4})
    store.mark_complete("mix", "fp-m", {"records_out": 4})
    (tmp_path / "mix" / "manifest.json").write_text("{not json", encoding="utf-8")
    store.state_path.write_bytes(damage)
    assert store.is_complete("generate", "fp-g") and store.is_complete("quality", "fp-q")
    assert not store.is_complete("mix", "fp-m")  # its manifest is damaged too: it runs again
    state = RunStore(tmp_path).state()
    assert state["rebuilt_from_manifests"] is True
    assert state["stages"]["quality"]["summary"] == {"records_out": 4}
    assert (tmp_path / "state.json.corrupt").read_bytes() == damage
    store.mark_complete("mix", "fp-m", {"records_out": 4})  # and the run carries on
    assert set(store.state()["stages"]) == {"generate", "quality", "mix"}
