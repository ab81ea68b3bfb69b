"""Evolve with review feedback against evolve without it, same seeds (issue 23).

Goal: an evolve run whose reviews between rounds steer the bandit reaches its acceptance
target in fewer rounds than the same run ignoring them.

The setting (``synthtune.testing.arms_setting`` with ``hidden_defect=True``, offline template
backend, real quality tiers): besides the usual arms, ``overdose`` writes notes exactly like
``triage`` that every tier accepts, but with dangerous dose advice; only an expert sees it.
After each round a simulated expert (``simulate_review``: reviews ``--share`` of the round's
accepted records, each verdict wrong with probability ``--error``) writes decisions to the
run's review store, as the review app would. With ``evolve.review_feedback`` on (the
default), the next round removes the rejected records from the pool and takes their arm's
reward back; off, the loop ignores the reviews (they still reach training through mix).

The acceptance target: ``--target`` records in the pool that the expert accepts (the truth
the simulation knows). Both conditions review the same share, with the same seeds.

    python bench/evolve_review.py [--seeds 5] [--rounds 8] [--per-round 60] [--target 150]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from synthtune.config import load_recipe
from synthtune.evolve.loop import Evolution
from synthtune.store import RunStore
from synthtune.testing.arms_setting import simulate_review, truly_bad, write_setting


def run(seed: int, feedback: bool, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    evolve = {
        "rounds": args.rounds,
        "per_round": args.per_round,
        "stop_at_threshold": False,  # every round runs: the target is what is compared
        "review_feedback": feedback,
        "distance_weight": 0.0,
    }
    path = write_setting(folder, seed=seed, real=args.real, evolve=evolve, hidden_defect=True)
    recipe = load_recipe(path)
    runs = folder / "runs"
    run_dir = runs / recipe.name
    good_per_round, bad_per_round, reached = [], [], None
    for number in range(1, args.rounds + 1):
        Evolution(recipe, runs, quiet=True).run(rounds=number)
        store = RunStore(run_dir)
        state = json.loads((run_dir / "evolve" / "state.json").read_text(encoding="utf-8"))
        pool = set(state["pool"])
        fresh = [
            r
            for r in store.read_table("evolve", f"round-{number:02d}")
            if r.status == "accepted" and r.id in pool
        ]
        simulate_review(run_dir, fresh, args.share, args.error, seed * 1000 + number)
        members = [
            r
            for n in range(1, number + 1)
            for r in store.read_table("evolve", f"round-{n:02d}")
            if r.id in pool
        ]
        good = sum(not truly_bad(r) for r in members)
        good_per_round.append(good)
        bad_per_round.append(len(members) - good)
        if reached is None and good >= args.target:
            reached = number
    return {"reached": reached, "good": good_per_round, "bad": bad_per_round}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=60)
    parser.add_argument("--target", type=int, default=150)
    parser.add_argument("--share", type=float, default=0.3, help="Share of a round reviewed.")
    parser.add_argument("--error", type=float, default=0.05, help="Reviewer error rate.")
    parser.add_argument("--real", type=int, default=400)
    args = parser.parse_args()
    started = time.perf_counter()
    results: dict[bool, list[dict[str, Any]]] = {True: [], False: []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for feedback in (False, True):
                folder = Path(tmp) / f"s{seed}-{'on' if feedback else 'off'}"
                results[feedback].append(run(seed, feedback, folder, args))
    print(
        f"target {args.target} expert-good records in the pool; {args.per_round} requests a "
        f"round; review {args.share:.0%} of each round, reviewer error {args.error:.0%}"
    )
    print(f"{'seed':>4}  {'without: rounds':>16}  {'with: rounds':>13}  good pool after R")
    for seed in range(args.seeds):
        off, on = results[False][seed], results[True][seed]
        print(
            f"{seed:>4}  {off['reached'] or '-':>16}  {on['reached'] or '-':>13}  "
            f"{off['good'][-1]} vs {on['good'][-1]} (bad left {off['bad'][-1]} vs "
            f"{on['bad'][-1]})"
        )
    reached = {k: [r["reached"] or args.rounds + 1 for r in v] for k, v in results.items()}
    fewer = sum(a < b for a, b in zip(reached[True], reached[False], strict=True))
    print(
        f"mean rounds to target: without {statistics.mean(reached[False]):.2f}, with "
        f"{statistics.mean(reached[True]):.2f} (not reached counts as {args.rounds + 1}); "
        f"fewer in {fewer}/{args.seeds} seeds, never more: "
        f"{all(a <= b for a, b in zip(reached[True], reached[False], strict=True))}"
    )
    print(f"wall {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
