"""Executors: the local loop, and Ray (tasks, actors, a worker killed mid-map) when installed."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.executor import (
    ExecutorError,
    LocalExecutor,
    flatten,
    make_executor,
    shards,
)


def square_all(part: list[int]) -> list[int]:
    return [x * x for x in part]


def scale_all(part: list[int], factor: int) -> list[int]:
    return [x * factor for x in part]


@dataclass(frozen=True)
class Counting:
    """A worker factory that records each build in ``folder`` (one file per build)."""

    folder: Path
    crash_marker: Path | None = None

    def __call__(self):  # type: ignore[no-untyped-def]
        (self.folder / f"build-{os.getpid()}-{len(list(self.folder.iterdir()))}").touch()
        marker = self.crash_marker

        def work(part: list[int]) -> list[int]:
            # the first process to reach part [8..] dies once, mid-map, without a reply
            if marker is not None and part[0] == 8 and not marker.exists():
                marker.touch()
                os._exit(1)
            return [x + 1000 for x in part]

        return work


def test_shards_are_consecutive_slices_and_flatten_undoes_them() -> None:
    items = list(range(10))
    assert shards(items, 4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert flatten(shards(items, 3)) == items
    assert shards([], 4) == []
    with pytest.raises(ValueError, match="at least 1"):
        shards(items, 0)


def test_local_executor_maps_in_order_builds_one_worker_and_reports_progress(
    tmp_path: Path,
) -> None:
    executor = LocalExecutor(shard_size=4)
    parts = executor.shards(list(range(10)))
    seen: list[int] = []
    assert flatten(executor.map(square_all, parts, advance=seen.append)) == [
        x * x for x in range(10)
    ]
    assert seen == [4, 4, 2]  # items per finished part
    assert flatten(executor.map(scale_all, parts, shared=3)) == [3 * x for x in range(10)]
    out = flatten(executor.map_workers(Counting(tmp_path), parts))
    assert out == [x + 1000 for x in range(10)]
    assert len(list(tmp_path.iterdir())) == 1  # the model is loaded once
    assert executor.map_workers(Counting(tmp_path), []) == []
    assert len(list(tmp_path.iterdir())) == 1  # and not at all for no work


def test_unknown_or_missing_executor_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, small_recipe: Path, tmp_path: Path
) -> None:
    with pytest.raises(ExecutorError, match="unknown executor 'spark'; choose one of: local"):
        make_executor("spark")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ExecutorError, match=r"synthtune\[ray\]"):
        make_executor("ray")
    result = CliRunner().invoke(
        app, ["run", str(small_recipe), "--out", str(tmp_path / "runs"), "--executor", "ray"]
    )
    assert result.exit_code == 2
    assert "pip install 'synthtune[ray]'" in result.output
    assert not (tmp_path / "runs").exists()  # refused before any work
