"""Multi-armed bandits that split a round's generation requests over arms.

An arm is one way of generating (template x strategy x temperature bucket). Its reward per
request lies in [0, 1]: accepted through the quality tiers, and useful for the distance (see
``evolve.rewards``). Allocation happens a round at a time, so each policy turns its scores into
counts for a batch of ``n`` requests. Policies are registered by name; ``uniform`` is the
baseline the benchmark compares against.

State is plain JSON (``to_state``/``from_state``) so an evolve run resumes between rounds with
the same posterior it stopped with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from synthtune import plugins


@dataclass
class ArmStats:
    pulls: int = 0  # requests sent through this arm
    reward: float = 0.0  # sum of per-request rewards in [0, 1]
    accepted: int = 0

    @property
    def mean(self) -> float:
        return self.reward / self.pulls if self.pulls else 0.0


@dataclass
class Bandit:
    """Arm statistics plus a policy; ``allocate`` is the policy's, ``update`` is shared."""

    arms: list[str]
    policy: str
    seed: int = 0
    stats: dict[str, ArmStats] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for arm in self.arms:
            self.stats.setdefault(arm, ArmStats())

    def allocate(self, n: int, round_number: int) -> dict[str, int]:
        """Requests per arm for a round of ``n`` (deterministic in seed and round)."""
        rng = np.random.default_rng([self.seed, round_number])
        counts = POLICIES.get(self.policy)(self, n, rng)
        return {arm: int(c) for arm, c in zip(self.arms, counts, strict=True)}

    def update(self, arm: str, pulls: int, reward: float, accepted: int) -> None:
        s = self.stats[arm]
        s.pulls += pulls
        s.reward += reward
        s.accepted += accepted

    def to_state(self) -> dict[str, Any]:
        return {
            "arms": self.arms,
            "policy": self.policy,
            "seed": self.seed,
            "stats": {a: vars(s).copy() for a, s in self.stats.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Bandit:
        stats = {a: ArmStats(**s) for a, s in state["stats"].items()}
        return cls(list(state["arms"]), state["policy"], state["seed"], stats)

    def table(self) -> list[dict[str, Any]]:
        return [
            {
                "arm": arm,
                "pulls": s.pulls,
                "accepted": s.accepted,
                "reward": round(s.reward, 3),
                "mean_reward": round(s.mean, 4),
            }
            for arm, s in self.stats.items()
        ]


class Policy(Protocol):
    """Requests per arm (in ``bandit.arms`` order) for a batch of ``n``."""

    def __call__(self, bandit: Bandit, n: int, rng: np.random.Generator) -> np.ndarray: ...


POLICIES = plugins.POLICIES  # name -> Policy


def _explore_floor(n: int, arms: int, share: float) -> np.ndarray:
    """A small guaranteed share per arm, so no arm's estimate freezes on a bad early round."""
    each = max(int(n * share / arms), 1 if n >= 2 * arms else 0)
    return np.full(arms, each, dtype=np.int64)


def thompson(bandit: Bandit, n: int, rng: np.random.Generator) -> np.ndarray:
    """Thompson sampling with Beta posteriors over the mean reward.

    Each request of the batch goes to the arm with the largest draw from its posterior
    ``Beta(1 + reward, 1 + pulls - reward)`` (fractional rewards are the Bernoulli trick's
    expectation); 5 % of the batch is spread evenly to keep every arm measured.
    """
    k = len(bandit.arms)
    floor = _explore_floor(n, k, 0.05)
    a = np.array([1 + bandit.stats[x].reward for x in bandit.arms])
    b = np.array([1 + bandit.stats[x].pulls - bandit.stats[x].reward for x in bandit.arms])
    draws = rng.beta(a[:, None], b[:, None], size=(k, n - int(floor.sum())))
    return floor + np.bincount(draws.argmax(axis=0), minlength=k)


def ucb(bandit: Bandit, n: int, rng: np.random.Generator) -> np.ndarray:
    """UCB1 over a batch: requests go one by one to the best upper bound, each counted as a
    pull with the arm's current mean (so a batch spreads instead of piling on one arm)."""
    k = len(bandit.arms)
    pulls = np.array([bandit.stats[x].pulls for x in bandit.arms], dtype=np.float64)
    means = np.array([bandit.stats[x].mean for x in bandit.arms])
    counts = np.zeros(k, dtype=np.int64)
    total = pulls.sum()
    for _ in range(n):
        seen = pulls + counts
        if (seen == 0).any():
            arm = int(np.flatnonzero(seen == 0)[0])
        else:
            bonus = np.sqrt(2 * math.log(total + counts.sum() + 1) / seen)
            arm = int(np.argmax(means + bonus + rng.uniform(0, 1e-9, k)))
        counts[arm] += 1
    return counts


def uniform(bandit: Bandit, n: int, rng: np.random.Generator) -> np.ndarray:
    """Equal shares (the remainder to randomly chosen arms): the baseline."""
    k = len(bandit.arms)
    counts = np.full(k, n // k, dtype=np.int64)
    counts[rng.choice(k, n % k, replace=False)] += 1
    return counts


plugins.register_policy("thompson", thompson)
plugins.register_policy("ucb", ucb)
plugins.register_policy("uniform", uniform)
