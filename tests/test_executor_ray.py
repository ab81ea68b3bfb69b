"""The Ray executor on a local 2-CPU Ray: ordered results, retries after a killed worker, and
a recipe whose generate -> quality -> mix gives the local executor's records and splits."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from synthtune.config import load_recipe
from synthtune.executor import LocalExecutor, RayExecutor, flatten
from synthtune.pipeline import run_recipe
from synthtune.store import RunStore

from .conftest import write_recipe
from .test_executor import Counting, scale_all, square_all

pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_executor():  # type: ignore[no-untyped-def]
    executor = RayExecutor(num_cpus=2, shard_size=8)
    yield executor
    executor.close()


def test_tasks_return_in_order_with_shared_data(ray_executor: RayExecutor) -> None:
    parts = ray_executor.shards(list(range(50)))
    seen: list[int] = []
    out = flatten(ray_executor.map(square_all, parts, advance=seen.append))
    assert out == [x * x for x in range(50)]
    assert sorted(seen) == sorted(len(p) for p in parts)
    assert flatten(ray_executor.map(scale_all, parts, shared=7)) == [7 * x for x in range(50)]


def test_a_worker_killed_mid_map_is_restarted_and_nothing_is_lost(
    ray_executor: RayExecutor, tmp_path: Path
) -> None:
    builds = tmp_path / "builds"
    builds.mkdir()
    marker = tmp_path / "crashed"
    parts = ray_executor.shards(list(range(40)))
    out = flatten(ray_executor.map_workers(Counting(builds, marker), parts))
    assert marker.exists()  # one worker process did die holding part [8..15]
    assert out == [x + 1000 for x in range(40)]  # every item once, in order
    # two actors, one of them built again after its process died
    assert len(list(builds.iterdir())) == 3


def _records(run_dir: Path, stage: str) -> list[tuple[str, str, tuple[str, ...]]]:
    table = RunStore(run_dir).read_table(stage, "dataset")
    return [(r.id, r.status, tuple(r.reasons)) for r in table]


def test_recipe_on_ray_gives_the_local_records_decisions_and_splits(
    ray_executor: RayExecutor, tmp_path: Path
) -> None:
    overrides = {
        "generate": {"n": 64, "flush_every": 16},
        "quality": {
            "perplexity": {"mode": "percentile", "percentile": 80},
            "dedup": {"minhash_threshold": 0.7},
        },
    }
    (tmp_path / "r").mkdir()
    recipe = load_recipe(write_recipe(tmp_path / "r", overrides))
    local = run_recipe(
        recipe, tmp_path / "local", until="mix", quiet=True, executor=LocalExecutor(8)
    )
    on_ray = run_recipe(recipe, tmp_path / "ray", until="mix", quiet=True, executor=ray_executor)
    quality = _records(local.run_dir, "quality")
    assert len(quality) == 64
    assert 10 <= sum(status == "rejected" for _, status, _ in quality) < 64  # decisions made
    assert _records(on_ray.run_dir, "quality") == quality
    for split in ("train", "val", "test"):
        ids = [r.id for r in RunStore(local.run_dir).read_table("mix", split)]
        assert [r.id for r in RunStore(on_ray.run_dir).read_table("mix", split)] == ids

    def scores(run_dir: Path) -> dict[str, float]:
        table = RunStore(run_dir).read_table("quality", "dataset")
        return {r.id: r.quality["perplexity"] for r in table if "perplexity" in r.quality}

    ppl = scores(local.run_dir)
    assert len(ppl) >= 32  # scored by the model, on two actors there
    assert scores(on_ray.run_dir) == pytest.approx(ppl, rel=1e-4)


def test_workers_are_built_once_per_actor_across_calls(
    ray_executor: RayExecutor, tmp_path: Path
) -> None:
    factory = Counting(tmp_path)
    parts = ray_executor.shards(list(range(32)))
    for _ in range(2):
        assert flatten(ray_executor.map_workers(factory, parts)) == [x + 1000 for x in range(32)]
        assert flatten(ray_executor.map(square_all, parts)) == [x * x for x in range(32)]
    assert len(list(tmp_path.iterdir())) == 2  # two actors, each built the worker once


def test_a_local_model_generates_on_the_workers_with_the_local_results(
    ray_executor: RayExecutor,
    tmp_path: Path,
    chatty_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from synthtune.llm.remote import RemoteBackend, runs_on_workers

    sent: list[int] = []
    remote_generate = RemoteBackend.generate

    def counting(self, requests):  # type: ignore[no-untyped-def]
        sent.append(len(requests))
        return remote_generate(self, requests)

    monkeypatch.setattr(RemoteBackend, "generate", counting)
    backend = {
        "type": "transformers",
        "model": str(chatty_model_dir),
        "max_new_tokens": 6,
        "batch_size": 4,
    }
    overrides = {"generate": {"n": 12, "flush_every": 6, "backend": backend}}
    (tmp_path / "r").mkdir()
    recipe = load_recipe(write_recipe(tmp_path / "r", overrides))
    local = run_recipe(recipe, tmp_path / "local", until="generate", quiet=True)
    on_ray = run_recipe(
        recipe, tmp_path / "ray", until="generate", quiet=True, executor=ray_executor
    )

    def replies(run_dir: Path) -> list[tuple[str, str, str]]:
        table = RunStore(run_dir).read_table("generate", "dataset")
        return [(r.id, r.status, r.payload.messages[-1].content) for r in table]

    assert len(replies(local.run_dir)) == 12
    assert replies(on_ray.run_dir) == replies(local.run_dir)  # greedy: the same replies
    usage = RunStore(on_ray.run_dir).stage_state("generate")["summary"]["usage"]  # type: ignore[index]
    assert usage["requests"] == 12  # counted by the driver's engine, as locally
    assert sum(sent) == 12  # every request went through the workers on Ray (none locally)
    assert runs_on_workers(recipe.generation.backend, ray_executor)
    assert not runs_on_workers(recipe.generation.backend, LocalExecutor())


@dataclass(frozen=True)
class DiesOnce:
    """Wraps a worker factory: the first worker process to score a part dies there, once."""

    factory: Any
    marker: Path

    def __call__(self):  # type: ignore[no-untyped-def]
        work = self.factory()

        def run(part: Any) -> Any:
            if not self.marker.exists():
                self.marker.touch()
                os._exit(1)
            return work(part)

        return run


class KillingExecutor(RayExecutor):
    """The Ray executor whose model workers (perplexity) lose a process mid-stage."""

    marker: Path

    def map_workers(self, factory, parts, *, advance=None):  # type: ignore[no-untyped-def]
        return super().map_workers(DiesOnce(factory, self.marker), parts, advance=advance)


def test_a_worker_killed_during_perplexity_scoring_changes_nothing(
    ray_executor: RayExecutor, tmp_path: Path
) -> None:
    overrides = {
        "generate": {"n": 48},
        "quality": {"perplexity": {"mode": "percentile", "percentile": 80}},
    }
    (tmp_path / "r").mkdir()
    recipe = load_recipe(write_recipe(tmp_path / "r", overrides))
    local = run_recipe(
        recipe, tmp_path / "local", until="mix", quiet=True, executor=LocalExecutor(8)
    )
    killing = KillingExecutor.__new__(KillingExecutor)
    killing.__dict__.update(ray_executor.__dict__)  # the same Ray and worker pool
    killing.marker = tmp_path / "died"
    on_ray = run_recipe(recipe, tmp_path / "ray", until="mix", quiet=True, executor=killing)
    assert killing.marker.exists()  # a worker did die while scoring
    assert _records(on_ray.run_dir, "quality") == _records(local.run_dir, "quality")
    for split in ("train", "val", "test"):
        ids = [r.id for r in RunStore(local.run_dir).read_table("mix", split)]
        assert [r.id for r in RunStore(on_ray.run_dir).read_table("mix", split)] == ids


class StoppedDriver(RayExecutor):
    """The Ray executor whose driver is interrupted (Ctrl-C) after the first scored part."""

    def map_workers(self, factory, parts, *, advance=None):  # type: ignore[no-untyped-def]
        def stop(n: int) -> None:
            raise KeyboardInterrupt

        return super().map_workers(factory, parts, advance=stop)


def test_a_run_whose_driver_stopped_mid_quality_resumes_to_the_same_result(
    ray_executor: RayExecutor, tmp_path: Path
) -> None:
    (tmp_path / "r").mkdir()
    recipe = load_recipe(write_recipe(tmp_path / "r", {"generate": {"n": 48}}))
    local = run_recipe(
        recipe, tmp_path / "local", until="mix", quiet=True, executor=LocalExecutor(8)
    )
    stopped = StoppedDriver.__new__(StoppedDriver)
    stopped.__dict__.update(ray_executor.__dict__)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe, tmp_path / "ray", until="mix", quiet=True, executor=stopped)
    store = RunStore(tmp_path / "ray" / recipe.name)
    assert store.stage_state("generate") and not store.stage_state("quality")
    again = run_recipe(recipe, tmp_path / "ray", until="mix", quiet=True, executor=ray_executor)
    assert [o.status for o in again.outcomes] == ["skipped", "ran", "ran"]
    assert _records(again.run_dir, "quality") == _records(local.run_dir, "quality")


# last in this module: it takes the fixture's workers away
def test_the_cli_flag_runs_the_stage_on_ray(ray_executor: RayExecutor, tmp_path: Path) -> None:
    import ray
    from typer.testing import CliRunner

    from synthtune.cli import app

    # the CLI starts its own worker pool on the running Ray: the fixture's must make room
    # (on a cluster, a second pool waits for free CPUs as any Ray job does)
    for actor in ray_executor.pool:
        ray.kill(actor)
    ray_executor.pool = []
    (tmp_path / "r").mkdir()
    path = write_recipe(tmp_path / "r", {"generate": {"n": 24}})
    runs = tmp_path / "runs"
    result = CliRunner().invoke(app, ["filter", str(path), "--out", str(runs), "--executor", "ray"])
    assert result.exit_code == 0, result.output
    assert "executor: ray (2 workers)" in result.output
    local = run_recipe(load_recipe(path), tmp_path / "local", until="quality", quiet=True)
    assert _records(runs / "medical-qa", "quality") == _records(local.run_dir, "quality")
