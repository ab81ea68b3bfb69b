"""Bandit policies on simulated arms: they find the good arm and keep exploring a little."""

from __future__ import annotations

import numpy as np
import pytest

from synthtune.evolve.bandit import POLICIES, Bandit

ARMS = {"good": 0.8, "so-so": 0.3, "bad": 0.05}


def _simulate(policy: str, rounds: int = 8, per_round: int = 60, seed: int = 0) -> Bandit:
    bandit = Bandit(list(ARMS), policy, seed=seed)
    rng = np.random.default_rng(seed)
    for number in range(rounds):
        for arm, n in bandit.allocate(per_round, number).items():
            hits = int(rng.binomial(n, ARMS[arm])) if n else 0
            bandit.update(arm, n, float(hits), hits)
    return bandit


@pytest.mark.parametrize("policy", ["thompson", "ucb"])
def test_learning_policies_beat_uniform_and_favour_the_good_arm(policy: str) -> None:
    learned, baseline = _simulate(policy), _simulate("uniform")
    total = sum(s.reward for s in learned.stats.values())
    assert total > 1.3 * sum(s.reward for s in baseline.stats.values())
    last = learned.allocate(60, 99)
    assert last["good"] == max(last.values()) and last["good"] >= 30


def test_every_arm_keeps_some_requests_under_thompson() -> None:
    bandit = _simulate("thompson")
    assert all(n >= 1 for n in bandit.allocate(100, 50).values())


def test_allocation_sums_and_is_deterministic() -> None:
    for policy in POLICIES.names():
        a, b = _simulate(policy, rounds=3), _simulate(policy, rounds=3)
        assert a.to_state() == b.to_state()
        assert sum(a.allocate(37, 5).values()) == 37


def test_state_round_trip_resumes_the_same_allocations() -> None:
    bandit = _simulate("thompson", rounds=3)
    again = Bandit.from_state(bandit.to_state())
    assert again.allocate(50, 3) == bandit.allocate(50, 3)
    assert again.table() == bandit.table()
