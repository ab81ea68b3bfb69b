"""Damaged run files: a complete stage whose table was truncated or garbled runs again
(with the reason logged) instead of being read; an interrupted generation whose shards are
cut off or hold a record whose bytes no longer match its id resumes to exactly the records
of an undamaged run."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
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


def test_damaged_shards_of_an_interrupted_generation_are_redone(tmp_path: Path) -> None:
    clean, _ = _run(tmp_path / "clean", "generate")
    wanted = [(r.id, r.payload.text("response")) for r in clean.read_table("generate", "dataset")]

    store, _ = _run(tmp_path / "runs", "generate")
    state = store.state()
    del state["stages"]["generate"]  # interrupted: shards on disk, the stage not complete
    store.state_path.write_text(json.dumps(state), encoding="utf-8")
    shards = store.shard_paths("generate")
    assert len(shards) == 4
    # shard 1: one record's reply changed, its id kept (what garbled bytes did before)
    garbled = table_to_records(pq.read_table(shards[1]))
    rec = garbled[3]
    reply = rec.payload.messages[-1].model_copy(update={"content": "Take ten times the dose."})
    payload = rec.payload.model_copy(update={"messages": [*rec.payload.messages[:-1], reply]})
    garbled[3] = rec.model_copy(update={"payload": payload})
    write_records(shards[1], garbled)
    # shard 2: cut off mid-file
    shards[2].write_bytes(shards[2].read_bytes()[:200])
    assert len(garbled) == 16

    store, log = _run(tmp_path / "runs", "generate")
    assert f"record {garbled[3].id} in shard-00001.parquet does not match its content" in log
    assert "shard-00002.parquet is unreadable" in log
    assert (store.stage_dir("generate") / "shard-00002.parquet.corrupt-0").exists()
    got = [(r.id, r.payload.text("response")) for r in store.read_table("generate", "dataset")]
    assert got == wanted  # every record once, with its true content
