"""The injection schedule: start at the ratio, then add synthetic records where the real data is
under-covered, re-measure, and stop at the distance threshold or the budget.

Pure decisions over cluster ids and measured distances; the mix stage does the I/O. Clusters
are k-means clusters of the real train split (``distribution.coverage``); a cluster's
*deficit* is how many more synthetic records it needs for the chosen synthetic records to
have the real data's cluster shares. Filling deficits first is what moves the synthetic
distribution toward the real one fastest (bench/mixing.py measures it against random picks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def allocate(need: np.ndarray, available: np.ndarray, count: int) -> np.ndarray:
    """Split ``count`` picks over clusters in proportion to ``need``, within ``available``.

    Largest-remainder rounding; what a cluster cannot supply goes to the other clusters in
    need. Clusters with no need get nothing: records there would move the synthetic data away
    from the real shares, so a round may add fewer than ``count``.
    """
    need = np.maximum(np.asarray(need, dtype=np.float64), 0.0)
    available = np.asarray(available, dtype=np.int64)
    out = np.zeros(len(available), dtype=np.int64)
    left = min(int(count), int(available[need > 0].sum()))
    while left > 0:
        room = available - out
        weights = np.where(room > 0, need, 0.0)
        share = weights / weights.sum() * left
        take = np.minimum(np.floor(share).astype(np.int64), room)
        if take.sum() == 0:  # rounding gave nothing: one record to the neediest cluster
            take[int(np.argmax(np.where(room > 0, share, -1.0)))] = 1
        out += take
        left -= int(take.sum())
    return out


def choose_additions(
    pool_clusters: np.ndarray,
    used: np.ndarray,
    reference_share: np.ndarray,
    count: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Indices of ``count`` unused pool records chosen to fill the cluster deficits.

    ``pool_clusters[i]`` is the real-data cluster of pool record ``i``; ``used`` marks records
    already chosen. Within a cluster, records are picked at random (seeded).
    """
    k = len(reference_share)
    chosen_counts = np.bincount(pool_clusters[used], minlength=k)
    target = np.asarray(reference_share) * (chosen_counts.sum() + count)
    free = [np.flatnonzero((pool_clusters == c) & ~used) for c in range(k)]
    picks = allocate(target - chosen_counts, np.array([len(f) for f in free]), count)
    out = [rng.choice(f, size=n, replace=False) for f, n in zip(free, picks, strict=True) if n]
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


@dataclass
class LabelQuotas:
    """Per-label quotas (``mix.labels``, from ``synthtune.label_targets``).

    ``labels[i]``: the label index of pool record ``i`` (-1: a label without a target, never
    chosen); ``quota[j]``: records label ``j`` gets at the start; ``closeness[i]``: distance
    of record ``i`` to its label's real rows (the order off-manifold records fill a short
    label in); ``fill[j]``: whether label ``j`` may be filled from off the manifold.
    """

    labels: np.ndarray
    quota: np.ndarray
    closeness: np.ndarray
    fill: np.ndarray


def start_by_shares(
    pool_clusters: np.ndarray, reference_share: np.ndarray, want: int, rng: np.random.Generator
) -> np.ndarray:
    """``want`` records by the real cluster shares, topped up at random when the pool cannot
    meet them, never from outside the real manifold."""
    used = np.zeros(len(pool_clusters), dtype=bool)
    first = choose_additions(pool_clusters, used, reference_share, want, rng)
    used[first] = True
    if len(first) < want:
        free = np.flatnonzero(~used & (pool_clusters != len(reference_share) - 1))
        extra = rng.choice(free, size=min(want - len(first), len(free)), replace=False)
        first = np.concatenate([first, extra])
    return first


def _within(
    mask: np.ndarray,
    pool_clusters: np.ndarray,
    used: np.ndarray,
    reference_share: np.ndarray,
    count: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``choose_additions`` over the pool records under ``mask`` (pool indices back)."""
    index = np.flatnonzero(mask)
    return index[choose_additions(pool_clusters[index], used[index], reference_share, count, rng)]


def start_by_label(
    pool_clusters: np.ndarray,
    reference_share: np.ndarray,
    quotas: LabelQuotas,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Each label's quota from its own records: by the real cluster shares, topped up at
    random on the manifold, then (where allowed) from off-manifold records, closest to the
    label's real rows first. Returns the chosen indices and the off-manifold fill per label."""
    outside = len(reference_share) - 1
    used = np.zeros(len(pool_clusters), dtype=bool)
    filled = np.zeros(len(quotas.quota), dtype=np.int64)
    for label, want in enumerate(quotas.quota):
        mine = quotas.labels == label
        used[_within(mine, pool_clusters, used, reference_share, int(want), rng)] = True
        short = int(want) - int((used & mine).sum())
        free = np.flatnonzero(mine & ~used & (pool_clusters != outside))
        if short > 0 and len(free):
            used[rng.choice(free, size=min(short, len(free)), replace=False)] = True
            short = int(want) - int((used & mine).sum())
        if short > 0 and quotas.fill[label]:
            off = np.flatnonzero(mine & ~used)
            off = off[np.argsort(quotas.closeness[off], kind="stable")][:short]
            used[off] = True
            filled[label] = len(off)
    return np.flatnonzero(used), filled


def add_by_label(
    pool_clusters: np.ndarray,
    used: np.ndarray,
    reference_share: np.ndarray,
    quotas: LabelQuotas,
    count: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """A round's ``count`` additions split over the labels by quota share (within what each
    label has left on the manifold), each label's part filling its cluster deficits."""
    on = pool_clusters != len(reference_share) - 1
    free = np.array(
        [int(((quotas.labels == j) & ~used & on).sum()) for j in range(len(quotas.quota))]
    )
    parts = allocate(quotas.quota.astype(np.float64), free, count)
    out = [
        _within(quotas.labels == j, pool_clusters, used, reference_share, int(n), rng)
        for j, n in enumerate(parts)
        if n
    ]
    return np.sort(np.concatenate(out)) if out else np.zeros(0, dtype=np.int64)


@dataclass
class RoundResult:
    """One row of the per-round table (the report plots ``wasserstein`` with its interval)."""

    round: int
    synthetic: int
    added: int
    ratio: float  # synthetic per real in the train split
    measures: dict[str, Any] = field(default_factory=dict)
    kept: bool = True  # False: this round's additions made the distance worse and were undone

    def as_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "synthetic": self.synthetic,
            "added": self.added,
            "ratio": round(self.ratio, 4),
            "kept": self.kept,
            **self.measures,
        }


@dataclass
class Schedule:
    """What the schedule decided: the chosen pool indices, the round table and why it stopped."""

    chosen: np.ndarray
    rounds: list[RoundResult]
    # "threshold" | "budget" | "pool exhausted" | "no improvement" | "coverage exhausted"
    # | "max rounds"
    stopped: str
    chosen_round: dict[int, int]  # pool index -> round it was added in
    filled: np.ndarray | None = None  # per label: records taken from off the real manifold


def run_schedule(
    pool_clusters: np.ndarray,
    reference_share: np.ndarray,
    real_train: int,
    start_ratio: float,
    max_ratio: float,
    per_round: int | None,
    max_rounds: int,
    threshold: float,
    measure: Callable[[np.ndarray], dict[str, Any]],
    seed: int,
    quotas: LabelQuotas | None = None,
) -> Schedule:
    """Start with ``start_ratio`` x ``real_train`` records, then deficit-filling rounds.

    The start is drawn by the real cluster shares too, topped up at random when the pool
    cannot meet them. Records outside every cluster (the last bucket of ``reference_share``,
    off the real manifold) are never chosen: the start is smaller when only they are left.
    ``measure(indices)`` returns the round's measures with the distance under
    ``"wasserstein"`` (``None`` when too few records to measure) and optionally its interval's
    upper end under ``"wasserstein_upper"``: the threshold is compared with the upper end (when
    given), improvement with the estimate. With ``quotas`` (class labels), the start is each
    label's quota and every round's additions are split over the labels by quota share.
    """
    rng = np.random.default_rng(seed)
    n_pool = len(pool_clusters)
    want = round(real_train * start_ratio)
    cap = min(int(real_train * max_ratio), n_pool)
    step = per_round or max(1, want // 2)
    used = np.zeros(n_pool, dtype=bool)
    filled = None
    if quotas is None:
        first = start_by_shares(pool_clusters, reference_share, want, rng)
    else:
        first, filled = start_by_label(pool_clusters, reference_share, quotas, rng)
    used[first] = True
    added_in = {int(i): 0 for i in first}
    start = len(first)
    rounds: list[RoundResult] = []
    added = start
    best = float("inf")
    new = np.zeros(0, dtype=np.int64)
    for number in range(max_rounds + 1):
        chosen = np.flatnonzero(used)
        measures = measure(chosen)
        rounds.append(RoundResult(number, len(chosen), added, len(chosen) / real_train, measures))
        distance = measures.get("wasserstein")
        if distance is not None and distance > best:  # the last additions made it worse
            used[new] = False
            for i in new:
                added_in.pop(int(i))
            rounds[-1].kept = False
            return Schedule(np.flatnonzero(used), rounds, "no improvement", added_in, filled)
        if distance is not None:
            best = distance
        upper = measures.get("wasserstein_upper", distance)
        if upper is not None and upper < threshold:
            return Schedule(chosen, rounds, "threshold", added_in, filled)
        if number == max_rounds:
            return Schedule(chosen, rounds, "max rounds", added_in, filled)
        if len(chosen) >= cap:
            reason = "budget" if cap < n_pool else "pool exhausted"
            return Schedule(chosen, rounds, reason, added_in, filled)
        count = min(step, cap - len(chosen))
        new = (
            choose_additions(pool_clusters, used, reference_share, count, rng)
            if quotas is None
            else add_by_label(pool_clusters, used, reference_share, quotas, count, rng)
        )
        if not len(new):
            return Schedule(chosen, rounds, "coverage exhausted", added_in, filled)
        used[new] = True
        added_in.update({int(i): number + 1 for i in new})
        added = len(new)
    raise AssertionError("unreachable: the loop returns at max_rounds")
