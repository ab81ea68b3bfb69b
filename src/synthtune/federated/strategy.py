"""The server strategy: Flower's FedAvg / FedProx, wrapped for bookkeeping.

Aggregation is Flower's own (``flwr.server.strategy.FedAvg.aggregate_fit``: the average of
the clients' adapter arrays weighted by their number of training examples; FedProx aggregates
the same way and sends ``proximal_mu`` to the clients). :class:`FederationStrategy` delegates
to it and adds what Flower lacks, written here: waiting for the expected clients before the
first round, dropping results not signed with the shared token, refusing a round with fewer
than ``min_clients`` results, a checkpoint of the global adapter after every round, and the
per-round table (losses, clients, bytes sent) that goes to the run report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import FedAvg, FedProx, Strategy

from synthtune.config import FederatedConfig
from synthtune.federated.params import save_arrays
from synthtune.federated.privacy import signature_ok

Log = Callable[[str], None]


def mean_train_loss(metrics: list[tuple[int, dict[str, Scalar]]]) -> dict[str, Scalar]:
    """The clients' train losses averaged with their example counts as weights."""
    known = [(n, float(m["train_loss"])) for n, m in metrics if "train_loss" in m]
    if not known:
        return {}
    return {"train_loss": sum(n * v for n, v in known) / sum(n for n, _ in known)}


def flower_strategy(
    cfg: FederatedConfig, initial: Parameters, fit_config: Callable[[int], dict[str, Scalar]]
) -> FedAvg:
    """Flower's FedAvg or FedProx over every connected client (fraction 1.0)."""
    common: dict[str, Any] = {
        "fraction_fit": 1.0,
        "fraction_evaluate": 1.0,
        "min_fit_clients": cfg.min_clients,
        "min_evaluate_clients": cfg.min_clients,
        "min_available_clients": cfg.min_clients,
        "initial_parameters": initial,
        "on_fit_config_fn": fit_config,
        "on_evaluate_config_fn": fit_config,
        "accept_failures": True,
        "fit_metrics_aggregation_fn": mean_train_loss,
        # clients report their validation loss as the loss itself, no further metrics
        "evaluate_metrics_aggregation_fn": lambda metrics: {},
    }
    if cfg.strategy == "fedprox":
        return FedProx(proximal_mu=cfg.proximal_mu, **common)
    return FedAvg(**common)


def parameter_bytes(parameters: Parameters) -> int:
    """Bytes of the serialised arrays, what a message carries besides small headers."""
    return sum(len(t) for t in parameters.tensors)


def as_float32(parameters: Parameters) -> Parameters:
    """SecAgg+ dequantises into float64; the adapter travels (and is stored) as the float32
    the clients send, or every later round would move twice the bytes."""
    arrays = parameters_to_ndarrays(parameters)
    if all(a.dtype != np.float64 for a in arrays):
        return parameters
    return ndarrays_to_parameters([a.astype(np.float32) for a in arrays])


class FederationStrategy(Strategy):
    """Delegates to ``inner``; keeps the round table and checkpoints (module docstring).

    ``first_round`` offsets Flower's round numbers (which restart at 1) so a resumed
    federation continues its numbering; ``full_bytes`` is what one full fine-tuning update
    of the base would weigh, for the bytes comparison.
    """

    def __init__(
        self,
        inner: FedAvg,
        cfg: FederatedConfig,
        checkpoints: Path,
        first_round: int,
        full_bytes: int,
        token: str | None = None,
        log: Log = print,
        on_round: Callable[[list[dict[str, Any]]], None] | None = None,
    ) -> None:
        self.inner = inner
        self.cfg = cfg
        self.checkpoints = checkpoints
        self.offset = first_round - 1
        self.full_bytes = full_bytes
        self.token = token
        self.log = log
        self.on_round = on_round
        self.rounds: list[dict[str, Any]] = []
        self._started = time.perf_counter()

    def _row(self, server_round: int) -> dict[str, Any]:
        number = server_round + self.offset
        if not self.rounds or self.rounds[-1]["round"] != number:
            self.rounds.append({"round": number})
        return self.rounds[-1]

    def round_row(self, server_round: int) -> dict[str, Any]:
        """The table row of Flower's round ``server_round`` (created if new)."""
        return self._row(server_round)

    def round_halted(self, server_round: int, why: str) -> None:
        """A round whose instructions went out but that never reached ``aggregate_fit`` (the
        SecAgg+ workflow stops a round with too few live clients or shares): recorded as
        finished without aggregation, so the table, the report and resume see it."""
        row = self._row(server_round)
        if "aggregated" in row:
            return
        sampled = row.get("clients_sampled", 0)
        row.update({"clients_ok": 0, "clients_failed": sampled, "aggregated": False})
        self.log(f"federated: round {row['round']}: {why}; the global adapter is kept")

    # ---- delegated
    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.inner.initialize_parameters(client_manager)

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        return self.inner.evaluate(server_round, parameters)

    def _enough_clients(self, server_round: int, client_manager: ClientManager) -> bool:
        """Wait at most ``round_timeout`` for ``min_clients`` connected clients. Without this
        Flower's sampling waits for them with its own 24 h timeout, so a federation that lost
        clients would hang instead of skipping the round."""
        timeout = int(self.cfg.round_timeout or 600)
        if client_manager.wait_for(self.cfg.min_clients, timeout=timeout):
            return True
        number = server_round + self.offset
        self.log(
            f"federated: round {number}: fewer than min_clients={self.cfg.min_clients} "
            f"connected after {timeout} s; round skipped, the global adapter is kept"
        )
        self._row(server_round).update({"clients_sampled": 0, "aggregated": False})
        return False

    # ---- fit
    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        if server_round == 1:
            wanted = self.cfg.initial_clients()
            self.log(f"federated: waiting for {wanted} clients")
            client_manager.wait_for(wanted, timeout=int(self.cfg.round_timeout or 86400))
        self._started = time.perf_counter()
        if not self._enough_clients(server_round, client_manager):
            return []
        instructions = self.inner.configure_fit(server_round, parameters, client_manager)
        row = self._row(server_round)
        row["clients_sampled"] = len(instructions)
        row["bytes_down"] = parameter_bytes(parameters) * len(instructions)
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        number = server_round + self.offset
        signed = [
            (proxy, res)
            for proxy, res in results
            # the signed example count must be the one Flower weights the average with
            if self.token is None
            or (
                signature_ok(self.token, number, res.metrics)
                and res.num_examples == res.metrics.get("train_examples")
            )
        ]
        row = self._row(server_round)
        row.update(
            {
                "clients_ok": len(signed),
                # a sampled client that sent no result failed or timed out (Flower's SecAgg+
                # workflow lists one failure twice, so ``failures`` is not a count)
                "clients_failed": max(0, row.get("clients_sampled", len(results)) - len(results)),
                "clients_rejected": len(results) - len(signed),
                # under SecAgg+ every result holds the one (float64) aggregate: counted as
                # the float32 adapter each client sent, before masking
                "bytes_up": sum(parameter_bytes(as_float32(res.parameters)) for _, res in signed),
                "adapter_bytes": (
                    parameter_bytes(as_float32(signed[0][1].parameters)) if signed else 0
                ),
                "full_ft_bytes": self.full_bytes,
                "examples": sum(res.num_examples for _, res in signed),
            }
        )
        if self.cfg.secure_aggregation is not None and len(signed) < len(results):
            # SecAgg+ hands every result the one unmasked sum, which includes the rejected
            # client's update: the only safe answer is to keep the global adapter
            self.log(
                f"federated: round {number}: {len(results) - len(signed)} result(s) failed the "
                "token check and secure aggregation cannot take them out; the global "
                "adapter is kept"
            )
            row["aggregated"] = False
            return None, {}
        if len(signed) < self.cfg.min_clients:
            self.log(
                f"federated: round {number} got {len(signed)} usable results, "
                f"fewer than min_clients={self.cfg.min_clients}; the global adapter is kept"
            )
            row["aggregated"] = False
            return None, {}
        parameters, metrics = self.inner.aggregate_fit(server_round, signed, failures)
        if "train_loss" in metrics:
            row["train_loss"] = metrics["train_loss"]
        row["aggregated"] = parameters is not None
        if parameters is not None:
            parameters = as_float32(parameters)
            save_arrays(
                self.checkpoints / f"round-{number:03d}.npz",
                parameters_to_ndarrays(parameters),
                {"round": number, "clients": len(signed), "examples": row["examples"]},
            )
        return parameters, metrics

    # ---- evaluate (every client scores the global adapter on its own val split)
    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        if not self._enough_clients(server_round, client_manager):
            return []
        return self.inner.configure_evaluate(server_round, parameters, client_manager)

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        loss, metrics = self.inner.aggregate_evaluate(server_round, results, failures)
        row = self._row(server_round)
        row["val_loss"] = loss
        row["val_count"] = sum(res.num_examples for _, res in results)
        row["seconds"] = round(time.perf_counter() - self._started, 2)
        if loss is not None:
            self.log(f"federated: round {row['round']} union val loss {loss:.4f}")
        if self.on_round is not None:
            self.on_round(self.rounds)
        return loss, metrics
