"""Damaged run files: a complete stage whose table was truncated or garbled runs again
(with the reason logged) instead of being read; an interrupted generation whose shards are
cut off or hold a record whose bytes no longer match its id resumes to exactly the records
of an undamaged run."""

from __future__ import annotations

import io
import json
import random
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from rich.console import Console

from synthtune.config import Recipe
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore, table_to_records, write_records


def _recipe() -> Recipe:
    return Recipe.model_validate(
        {
            "name": "damaged",
            "seed": 4,
            "generate": {
                "n": 60,
                "flush_every": 16,
                "templates": [
                    {
                        "id": "t",
                        "prompt": "Patient {{ i }} reports {{ s }}.",
                        "response": "Advice {{ i }} for {{ s }}.",
                        "slots": {"i": {"randint": [0, 10**6]}, "s": {"choice": ["a", "b"]}},
                    }
                ],
            },
            "quality": {"perplexity": {"enabled": False}},
        }
    )


def _run(runs: Path, until: str) -> tuple[RunStore, str]:
    """Run the recipe into ``runs/damaged``; the store and the log."""
    out = io.StringIO()
    run_recipe(_recipe(), runs, until=until, console=Console(file=out, width=300))
    return RunStore(runs / "damaged"), out.getvalue()


def test_a_truncated_table_of_a_complete_stage_runs_that_stage_again(tmp_path: Path) -> None:
    store, _ = _run(tmp_path / "runs", "mix")
    expected = [r.id for r in store.read_table("mix", "train")]
    table = store.path("quality", "dataset.parquet")
    table.write_bytes(table.read_bytes()[: table.stat().st_size // 2])
    assert store.damaged_outputs("quality") == ["dataset.parquet"]
    store, log = _run(tmp_path / "runs", "mix")
    assert "quality: dataset.parquet changed or damaged since the stage completed" in log
    assert "generate: complete, skipped" in log
    assert [r.id for r in store.read_table("mix", "train")] == expected
    assert store.damaged_outputs("quality") == []


def _interrupted(store: RunStore) -> None:
    """As after a crash mid-generation: shards on disk, the stage not complete."""
    state = store.state()
    del state["stages"]["generate"]
    store.state_path.write_text(json.dumps(state), encoding="utf-8")
    (store.stage_dir("generate") / "dataset.parquet").unlink()


def _records(store: RunStore) -> list[tuple[str, str, str]]:
    return [
        (r.id, r.payload.text("response"), r.status)
        for r in store.read_table("generate", "dataset")
    ]


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Any]]:
    runs = tmp_path_factory.mktemp("clean")
    store, _ = _run(runs, "generate")
    assert len(store.shard_paths("generate")) == 4
    return runs / "damaged", _records(store)


def test_60_of_60_damaged_shards_are_detected_and_redone(
    tmp_path: Path, generated: tuple[Path, list[Any]]
) -> None:
    """Random damage -- bytes overwritten at a random place, or the file cut short -- to a
    random shard of an interrupted generation, 60 times: every resume ends with exactly the
    records of the undamaged run."""
    clean_dir, wanted = generated
    rng = random.Random(60)
    for case in range(60):
        run_dir = tmp_path / f"case-{case}" / "damaged"
        shutil.copytree(clean_dir, run_dir)
        store = RunStore(run_dir)
        _interrupted(store)
        shard = rng.choice(store.shard_paths("generate"))
        data = bytearray(shard.read_bytes())
        if rng.random() < 0.5:
            data = data[: rng.randrange(len(data))]
        else:
            at = rng.randrange(len(data) - 8)
            data[at : at + 8] = rng.randbytes(8)
        shard.write_bytes(bytes(data))
        store, log = _run(tmp_path / f"case-{case}", "generate")
        assert f"generate: {shard.name} " in log, (case, log)
        assert _records(store) == wanted, case


def test_a_record_whose_bytes_changed_in_a_shard_without_checksum_is_redone(
    tmp_path: Path, generated: tuple[Path, list[Any]]
) -> None:
    """Shards written before checksums existed: the record id, a hash of the content, is
    recomputed on resume; a record whose content changed under its id is dropped and redone."""
    clean_dir, wanted = generated
    run_dir = tmp_path / "damaged"
    shutil.copytree(clean_dir, run_dir)
    store = RunStore(run_dir)
    _interrupted(store)
    for sidecar in store.stage_dir("generate").glob("*.sha256"):
        sidecar.unlink()
    shard = store.shard_paths("generate")[1]
    garbled = table_to_records(pq.read_table(shard))
    rec = garbled[3]
    reply = rec.payload.messages[-1].model_copy(update={"content": "Take ten times the dose."})
    payload = rec.payload.model_copy(update={"messages": [*rec.payload.messages[:-1], reply]})
    garbled[3] = rec.model_copy(update={"payload": payload})
    write_records(shard, garbled)
    store, log = _run(tmp_path, "generate")
    assert f"record {rec.id} in shard-00001.parquet does not match its content" in log
    assert _records(store) == wanted
