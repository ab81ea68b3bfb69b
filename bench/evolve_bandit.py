"""The evolve loop's bandit against uniform allocation, same seeds, one run.

Goal (issue 7): on a setting where some arms produce mostly rejected or off-distribution
records, the bandit reaches the same number of accepted records with >= 30 % fewer generation
requests than uniform allocation, and reaches the distance threshold in fewer rounds.

The setting (``synthtune.testing.arms_setting``, offline template backend, real quality
tiers): ``triage`` writes like the real data; ``offtopic`` is fluent and accepted but far from
it; ``boilerplate`` and ``looping`` are mostly rejected (refusals, repetition). The distance is
that of the accepted pool's usable part (records inside a real cluster's support) to the real
train split; a round "reaches the threshold" when the upper end of its 95 % interval is below
``mix.stop_when.wasserstein_below`` (0.15).

    python bench/evolve_bandit.py [--rounds 8] [--per-round 120] [--real 1500]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from synthtune.config import load_recipe
from synthtune.evolve.loop import Evolution, RoundOutcome
from synthtune.testing.arms_setting import write_setting


def run(policy: str, folder: Path, args: argparse.Namespace) -> list[RoundOutcome]:
    evolve = {
        "rounds": args.rounds,
        "per_round": args.per_round,
        "policy": policy,
        "stop_at_threshold": False,  # run every round so both policies are compared fully
    }
    path = write_setting(folder / policy, seed=args.seed, real=args.real, evolve=evolve)
    return Evolution(load_recipe(path), folder / policy / "runs", quiet=True).run()


def requests_to_reach(rounds: list[RoundOutcome], target: int, per_round: int) -> float | None:
    """Requests until the cumulative accepted count reaches ``target`` (linear in a round)."""
    done, spent = 0, 0
    for r in rounds:
        if done + r.accepted >= target:
            return spent + per_round * (target - done) / max(r.accepted, 1)
        done, spent = done + r.accepted, spent + per_round
    return None


def first_round_below(rounds: list[RoundOutcome], threshold: float) -> int | None:
    for r in rounds:
        upper = r.measures.get("wasserstein_upper")
        if upper is not None and upper < threshold:
            return r.number
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--per-round", type=int, default=120)
    parser.add_argument("--real", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results, seconds = {}, {}
        for policy in ("thompson", "uniform"):
            started = time.perf_counter()
            results[policy] = run(policy, Path(tmp), args)
            seconds[policy] = time.perf_counter() - started
    threshold = 0.15
    for policy, rounds in results.items():
        print(f"{policy}: {seconds[policy]:.0f} s")
        for r in rounds:
            m = r.measures
            print(
                f"  round {r.number}: accepted {r.accepted:4d}/{r.generated:4d}  pool "
                f"{m['pool']:5d} usable {m.get('usable', 0):5d}  distance {m['wasserstein']} "
                f"(upper {m.get('wasserstein_upper')})  {r.allocation}"
            )
    uniform, bandit = results["uniform"], results["thompson"]
    target = sum(r.accepted for r in uniform)
    spent_uniform = args.per_round * len(uniform)
    spent_bandit = requests_to_reach(bandit, target, args.per_round)
    print(f"\naccepted records: uniform {target} after {spent_uniform} requests")
    if spent_bandit is None:
        print("bandit never reached that many accepted records: FAIL")
    else:
        saving = 1 - spent_bandit / spent_uniform
        verdict = "PASS" if saving >= 0.30 else "FAIL"
        print(
            f"bandit reached {target} after {spent_bandit:.0f} requests: "
            f"{100 * saving:.0f} % fewer (goal >= 30 %): {verdict}"
        )
    rb, ru = first_round_below(bandit, threshold), first_round_below(uniform, threshold)
    print(f"first round with the distance interval below {threshold}: bandit {rb}, uniform {ru}")
    fewer = rb is not None and (ru is None or rb < ru)
    print(f"bandit reaches the threshold in fewer rounds: {'PASS' if fewer else 'FAIL'}")


if __name__ == "__main__":
    main()
