"""Quality tiers on the local executor vs Ray, per tier, on one generated set.

Generates the demo recipe (``examples/medical-qa``: template backend, local-tiny perplexity,
the rules pack, the real split for decontamination) at ``--n`` records (20,000 by default)
once, then runs every enabled quality tier on a fresh copy of those records with the local
executor and with a local Ray of ``--workers`` CPUs, in turns, and prints records/s per tier,
the Ray overhead (Ray time / local time - 1) and whether both gave the same ids, decisions
and reasons. Ray's start-up (``ray.init``) is timed apart, and one untimed pass over a few
shards per executor first builds the local-tiny model and lets Ray's workers import
synthtune: a cluster pays both once.

    python bench/executors.py [--n 20000] [--workers 2] [--repeats 2] [--shard-size 512]

Measured here: see docs/scale.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from synthtune.config import load_recipe
from synthtune.context import StageContext
from synthtune.executor import Executor, LocalExecutor, RayExecutor
from synthtune.pipeline import run_recipe
from synthtune.quality.stage import enabled_tiers
from synthtune.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "medical-qa"


def recipe_for(folder: Path, n: int) -> Path:
    shutil.copytree(EXAMPLE, folder / "recipe", dirs_exist_ok=True)
    path = folder / "recipe" / "recipe.yaml"
    recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    recipe["generate"]["n"] = n
    recipe["generate"]["flush_every"] = 2000
    # MinHash near-dup on too (the demo leaves it at its default), so banding is measured
    recipe.setdefault("quality", {}).setdefault("dedup", {})["minhash_threshold"] = 0.8
    # the demo's slots make ~2,000 distinct replies: a Faker sentence per record keeps 20,000
    # mostly distinct, so every tier sees most of them (as an LLM's replies would)
    for template in recipe["generate"]["templates"]:
        template["response"] += " Note: {{ note }}"
        template["slots"]["note"] = {"faker": "sentence"}
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False), "utf-8")
    return path


seen: dict[str, int] = {}  # records entering each tier (the same on every executor)


def run_tiers(
    recipe: Any, store: RunStore, executor: Executor, limit: int | None = None
) -> tuple[dict[str, float], list]:
    records = store.read_table("generate", "dataset")[:limit]
    ctx = StageContext(recipe=recipe, store=store, quiet=True, executor=executor)
    seconds: dict[str, float] = {}
    for name, tier in enabled_tiers(recipe):
        seen[name] = sum(r.status == "accepted" for r in records)
        started = time.perf_counter()
        tier(ctx, records)
        seconds[name] = time.perf_counter() - started
    decisions = [(r.id, r.status, tuple(r.reasons)) for r in records]
    return seconds, decisions


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--shard-size", type=int, default=512)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="synthtune-executors-"))
    recipe = load_recipe(recipe_for(folder, args.n))
    started = time.perf_counter()
    result = run_recipe(recipe, folder / "runs", until="generate", quiet=True)
    store = RunStore(result.run_dir)
    n = len(store.read_table("generate", "dataset"))
    print(json.dumps({"generated": n, "seconds": round(time.perf_counter() - started, 1)}))
    started = time.perf_counter()
    ray_executor = RayExecutor(
        num_cpus=args.workers, workers=args.workers, shard_size=args.shard_size
    )
    print(json.dumps({"ray_init_s": round(time.perf_counter() - started, 1)}))
    executors: dict[str, Executor] = {
        "local": LocalExecutor(args.shard_size),
        f"ray-{args.workers}": ray_executor,
    }
    for executor in executors.values():  # untimed: the local-tiny build, Ray's worker imports
        run_tiers(recipe, store, executor, limit=args.workers * args.shard_size)
    times: dict[str, list[dict[str, float]]] = {name: [] for name in executors}
    decisions: dict[str, list] = {}
    try:
        for _ in range(args.repeats):
            for name, executor in executors.items():
                seconds, decided = run_tiers(recipe, store, executor)
                times[name].append(seconds)
                decisions.setdefault(name, decided)
                assert decisions[name] == decided, f"{name} is not deterministic"
                print(
                    json.dumps({"executor": name, **{k: round(v, 2) for k, v in seconds.items()}})
                )
    finally:
        ray_executor.close()
    summary: dict[str, Any] = {}
    for tier in times["local"][0]:
        row: dict[str, Any] = {"records_in": seen[tier]}
        for name in executors:
            median = statistics.median(run[tier] for run in times[name])
            row[f"{name}_s"] = round(median, 2)
            row[f"{name}_records_per_s"] = round(seen[tier] / median, 1)
        local_s, ray_s = row["local_s"], row[f"ray-{args.workers}_s"]
        row["ray_overhead"] = round(ray_s / local_s - 1, 3)
        summary[tier] = row
    total = {
        name: sum(statistics.median(r[t] for r in times[name]) for t in summary)
        for name in executors
    }
    ray_name = f"ray-{args.workers}"
    summary["all tiers"] = {
        "local_s": round(total["local"], 2),
        f"{ray_name}_s": round(total[ray_name], 2),
        "ray_overhead": round(total[ray_name] / total["local"] - 1, 3),
    }
    identical = decisions["local"] == decisions[ray_name]
    rejected = sum(status == "rejected" for _, status, _ in decisions["local"])
    print(json.dumps({"records": n, "rejected": rejected, "identical_decisions": identical}))
    print(json.dumps(summary, indent=1))
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
