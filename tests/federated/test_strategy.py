"""The server strategy: Flower's FedAvg gives the examples-weighted mean of the adapters,
checked against a hand-computed average; unsigned results and thin rounds are refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays

from synthtune.config import FederatedConfig
from synthtune.federated.privacy import sign
from synthtune.federated.server import latest_checkpoint
from synthtune.federated.strategy import FederationStrategy, flower_strategy

UPDATES = [  # (arrays, examples) of three clients
    ([np.array([[1.0, 2.0]]), np.array([3.0])], 10),
    ([np.array([[4.0, 0.0]]), np.array([-1.0])], 30),
    ([np.array([[0.0, 8.0]]), np.array([5.0])], 60),
]


def _fit_res(arrays: list[np.ndarray], examples: int, metrics: dict | None = None) -> FitRes:
    return FitRes(
        Status(Code.OK, ""),
        ndarrays_to_parameters(arrays),
        examples,
        {"train_examples": examples, "train_loss": 2.0, **(metrics or {})},
    )


def _strategy(tmp_path: Path, cfg: FederatedConfig, token: str | None = None):
    start = ndarrays_to_parameters([np.zeros((1, 2)), np.zeros(1)])
    inner = flower_strategy(cfg, start, lambda r: {"round": r})
    return FederationStrategy(inner, cfg, tmp_path / "global", 1, 1000, token, log=lambda m: None)


@pytest.mark.parametrize("kind", ["fedavg", "fedprox"])
def test_aggregate_is_the_examples_weighted_average(tmp_path: Path, kind: str) -> None:
    strategy = _strategy(tmp_path, FederatedConfig(strategy=kind))
    results = [(object(), _fit_res(a, n)) for a, n in UPDATES]
    parameters, _ = strategy.aggregate_fit(1, results, [])  # type: ignore[arg-type]
    assert parameters is not None
    got = parameters_to_ndarrays(parameters)
    # by hand: (10 * x1 + 30 * x2 + 60 * x3) / 100
    assert np.allclose(got[0], [[(10 * 1 + 30 * 4 + 60 * 0) / 100, (10 * 2 + 60 * 8) / 100]])
    assert np.allclose(got[1], [(10 * 3 - 30 * 1 + 60 * 5) / 100])
    row = strategy.rounds[0]
    assert row["examples"] == 100 and row["clients_ok"] == 3 and row["aggregated"]
    assert row["bytes_up"] == 3 * row["adapter_bytes"] > 0
    done, arrays = latest_checkpoint(tmp_path / "global")
    assert done == 1 and arrays is not None and np.allclose(arrays[1], got[1])


def test_unsigned_results_are_dropped_and_a_thin_round_keeps_the_adapter(tmp_path: Path) -> None:
    strategy = _strategy(tmp_path, FederatedConfig(min_clients=2), token="s3cret")
    good = _fit_res(*UPDATES[0], {"signature": sign("s3cret", 1, 10)})
    forged = _fit_res(*UPDATES[1], {"signature": sign("guess", 1, 30)})
    unsigned = _fit_res(*UPDATES[2])
    results = [(object(), good), (object(), forged), (object(), unsigned)]
    parameters, _ = strategy.aggregate_fit(1, results, [])  # type: ignore[arg-type]
    assert parameters is None  # one signed result < min_clients: no new global adapter
    assert strategy.rounds[0]["clients_rejected"] == 2
    assert latest_checkpoint(tmp_path / "global") == (0, None)


def test_a_signed_result_with_another_averaging_weight_is_rejected(tmp_path: Path) -> None:
    """The signature covers the example count; Flower weights by FitRes.num_examples."""
    strategy = _strategy(tmp_path, FederatedConfig(min_clients=1), token="s3cret")
    honest = _fit_res(*UPDATES[0], {"signature": sign("s3cret", 1, 10)})
    inflated = _fit_res(*UPDATES[1], {"signature": sign("s3cret", 1, 30)})
    inflated.num_examples = 10**6  # the signed metric still says 30
    parameters, _ = strategy.aggregate_fit(1, [(object(), honest), (object(), inflated)], [])  # type: ignore[list-item]
    assert parameters is not None
    assert np.allclose(parameters_to_ndarrays(parameters)[1], [3.0])  # the honest client only
    assert strategy.rounds[0]["clients_rejected"] == 1


def test_a_round_without_enough_connected_clients_is_skipped_not_awaited(tmp_path: Path) -> None:
    """Flower's own sampling would wait 24 h for min_clients; the round is skipped after
    round_timeout instead, for training and for evaluation."""
    from flwr.server.client_manager import SimpleClientManager

    strategy = _strategy(tmp_path, FederatedConfig(min_clients=2, round_timeout=0.01))
    start = ndarrays_to_parameters([np.zeros((1, 2)), np.zeros(1)])
    manager = SimpleClientManager()  # nobody connected
    assert strategy.configure_fit(2, start, manager) == []
    assert strategy.configure_evaluate(2, start, manager) == []
    assert strategy.rounds[-1] == {"round": 2, "clients_sampled": 0, "aggregated": False}


def test_resume_continues_after_rounds_that_ran_without_aggregating() -> None:
    from synthtune.federated.server import resume_point

    rows = [
        {"round": 1, "clients_sampled": 3, "clients_ok": 3, "aggregated": True},
        {"round": 2, "clients_sampled": 3, "clients_ok": 1, "aggregated": False},
        {"round": 3, "clients_sampled": 0, "aggregated": False},  # skipped: nobody connected
        {"round": 4, "clients_sampled": 3},  # crashed before its results came back
    ]
    done, earlier = resume_point(1, rows)  # the newest checkpoint is round 1's
    assert done == 3 and [r["round"] for r in earlier] == [1, 2, 3]
    assert resume_point(0, []) == (0, [])
