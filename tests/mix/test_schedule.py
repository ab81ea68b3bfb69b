"""The injection schedule: deficit filling, budgets and stop reasons."""

from __future__ import annotations

import numpy as np

from synthtune.mix.schedule import allocate, choose_additions, run_schedule


def test_allocate_follows_need_within_availability() -> None:
    assert allocate(np.array([3.0, 1.0, 0.0]), np.array([10, 10, 10]), 4).tolist() == [3, 1, 0]
    # cluster 0 can give only 1: the rest goes by need, then by room
    assert allocate(np.array([5.0, 1.0, 0.0]), np.array([1, 10, 10]), 4).tolist() == [1, 3, 0]
    # clusters with no need get nothing, even with records left
    assert allocate(np.array([1.0, 0.0, 2.0]), np.array([0, 9, 1]), 5).tolist() == [0, 0, 1]


def test_choose_additions_fills_the_under_covered_cluster() -> None:
    clusters = np.array([0] * 50 + [1] * 50)
    used = np.zeros(100, dtype=bool)
    used[:20] = True  # 20 chosen, all from cluster 0
    picks = choose_additions(clusters, used, np.array([0.5, 0.5]), 20, np.random.default_rng(0))
    assert len(picks) == 20 and not used[picks].any()
    assert (clusters[picks] == 1).all()  # 20/20 is the real 50/50


def _tv_measure(clusters: np.ndarray, share: np.ndarray):
    def measure(chosen: np.ndarray) -> dict[str, float]:
        counts = np.bincount(clusters[chosen], minlength=len(share))
        return {"wasserstein": float(np.abs(counts / counts.sum() - share).sum() / 2)}

    return measure


def test_start_follows_the_real_shares_and_keeps_the_ratio() -> None:
    clusters = np.array([0] * 300 + [1] * 20 + [2] * 5)  # 2 = outside every real cluster
    share = np.array([0.5, 0.5, 0.0])
    result = run_schedule(
        clusters, share, 300, 1 / 3, 1.0, 30, 0, 0.1, _tv_measure(clusters, share), 0
    )
    picked = np.bincount(clusters[result.chosen], minlength=3)
    # cluster 1 is used up first, the rest comes from 0; the outside bucket stays unused
    assert picked.tolist() == [80, 20, 0] and result.rounds[0].synthetic == 100
    few = np.array([0] * 10 + [2] * 200)
    short = run_schedule(few, share, 300, 1 / 3, 1.0, 30, 0, 0.1, _tv_measure(few, share), 0)
    assert len(short.chosen) == 10  # off-manifold records are never injected


def test_schedule_grows_until_the_distance_is_below_the_threshold() -> None:
    rng = np.random.default_rng(1)
    clusters = rng.integers(0, 3, 600)
    share = np.array([0.4, 0.3, 0.3, 0.0])

    def measure(chosen: np.ndarray) -> dict[str, float]:
        counts = np.bincount(clusters[chosen], minlength=4)
        tv = float(np.abs(counts / counts.sum() - share).sum() / 2)
        return {"wasserstein": tv + 2 / np.sqrt(len(chosen))}  # noise shrinks with size

    result = run_schedule(clusters, share, 300, 1 / 3, 2.0, 50, 10, 0.12, measure, seed=0)
    distances = [r.measures["wasserstein"] for r in result.rounds]
    assert result.rounds[0].synthetic == 100 and len(result.rounds) > 2
    assert distances == sorted(distances, reverse=True)
    assert result.stopped == "threshold" and distances[-1] < 0.12 <= distances[-2]
    assert len(result.chosen) == result.rounds[-1].synthetic
    assert {result.chosen_round[int(i)] for i in result.chosen} == set(range(len(result.rounds)))


def test_schedule_undoes_a_round_that_made_things_worse() -> None:
    clusters = np.array([0] * 300 + [1] * 60 + [2] * 40)
    np.random.default_rng(1).shuffle(clusters)
    share = np.array([0.5, 0.25, 0.25])
    worse = iter([0.5, 0.3, 0.4])  # round 2 is measured worse than round 1
    result = run_schedule(
        clusters, share, 300, 1 / 3, 1.0, 30, 10, 0.1, lambda c: {"wasserstein": next(worse)}, 0
    )
    assert result.stopped == "no improvement" and [r.kept for r in result.rounds] == [
        True,
        True,
        False,
    ]
    assert len(result.chosen) == 130 and max(result.chosen_round.values()) == 1


def test_schedule_stops_at_the_budget_and_when_already_close() -> None:
    clusters = np.array([0, 1] * 200)
    share = np.array([0.9, 0.1])
    shrinking = lambda c: {"wasserstein": 1 / np.sqrt(len(c))}  # noqa: E731
    result = run_schedule(clusters, share, 300, 1 / 3, 0.5, None, 10, 0.01, shrinking, 0)
    assert result.stopped == "budget" and len(result.chosen) == 150
    only_zero = np.zeros(400, dtype=np.int64)
    gone = run_schedule(
        only_zero,
        np.array([0.5, 0.5]),
        300,
        1 / 3,
        1.0,
        None,
        10,
        0.01,
        _tv_measure(only_zero, np.array([0.5, 0.5])),
        0,
    )
    assert gone.stopped == "coverage exhausted" and len(gone.chosen) == 100
    close = run_schedule(
        only_zero,
        np.array([1.0, 0.0]),
        300,
        1 / 3,
        1.0,
        None,
        10,
        0.1,
        _tv_measure(only_zero, np.array([1.0, 0.0])),
        0,
    )
    assert close.stopped == "threshold" and len(close.rounds) == 1 and len(close.chosen) == 100


def test_unmeasurable_rounds_do_not_stop_the_schedule() -> None:
    clusters = np.array([0, 1] * 15)
    result = run_schedule(
        clusters,
        np.array([0.9, 0.1]),
        12,
        1 / 3,
        2.0,
        2,
        3,
        0.15,
        lambda c: {"wasserstein": None},
        0,
    )
    assert result.stopped == "max rounds" and [r.synthetic for r in result.rounds] == [4, 6, 8, 10]
