"""RunStore.reuse_stage: a sibling's complete stage linked in whole, marked complete only
after its folder is in place; SQLite files copied (they are written in place)."""

from __future__ import annotations

from pathlib import Path

import pytest

from synthtune.errors import StageError
from synthtune.store import RunStore


def test_reuse_links_the_stage_and_marks_it_complete_last(tmp_path: Path) -> None:
    sibling = RunStore(tmp_path / "a")
    sibling.write_json("generate", "records.json", [1, 2])
    (sibling.stage_dir("generate") / "cache.sqlite").write_bytes(b"db")
    sibling.mark_complete("generate", "f1", {"records": 2})
    here = RunStore(tmp_path / "b")
    stale = here.root / ".generate.reuse"  # what a crash during an earlier copy leaves
    stale.mkdir(parents=True)
    (stale / "half").write_text("x")
    here.write_json("generate", "partial.json", {})  # an incomplete stage of its own
    assert not here.is_complete("generate", "f1")

    here.reuse_stage("generate", sibling)
    assert here.is_complete("generate", "f1")
    assert (here.stage_state("generate") or {})["reused_from"] == str(sibling.root)
    assert sorted(p.name for p in here.stage_dir("generate").iterdir()) == [
        "cache.sqlite",
        "manifest.json",
        "records.json",
    ]
    assert here.path("generate", "records.json").stat().st_nlink == 2  # a hard link
    assert here.path("generate", "cache.sqlite").stat().st_nlink == 1  # a copy
    assert not stale.exists()


def test_an_incomplete_sibling_stage_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StageError, match="nothing to reuse"):
        RunStore(tmp_path / "b").reuse_stage("mix", RunStore(tmp_path / "a"))
