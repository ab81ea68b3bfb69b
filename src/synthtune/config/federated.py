"""Recipe model of ``synthtune federated``: rounds, strategy, clients, privacy."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from synthtune.config.base import RecipePath, StrictModel


class PartitionConfig(StrictModel):
    """Simulation from one dataset (``mix.real``): how its records are dealt to clients."""

    clients: int = Field(3, ge=2, description="Number of simulated clients.")
    by: str | None = Field(
        None,
        description="Non-IID: the slot name (lineage.slots) or 'label' whose values are dealt "
        "to clients (each value goes to one client); unset: IID (records dealt at random).",
    )


class LocalDPConfig(StrictModel):
    """Local differential privacy on every client update (Flower's ``LocalDpMod``).

    The update (new minus received adapter) is clipped to ``clipping_norm`` in L2 and
    Gaussian noise of std ``2 * clipping_norm * sqrt(2 ln(1.25/delta)) / epsilon`` is added
    (the Gaussian mechanism; sensitivity 2C, as a clipped update lies anywhere in the C-ball).
    Each round spends (epsilon, delta); the report states the total by basic composition.
    The calibration is a guarantee only for epsilon < 1.
    """

    clipping_norm: float = Field(1.0, gt=0, description="L2 bound of one client's update.")
    epsilon: float = Field(1.0, gt=0, description="Privacy budget spent per round.")
    delta: float = Field(1e-5, gt=0, lt=1, description="Failure probability per round.")


class SecureAggregationConfig(StrictModel):
    """SecAgg+ (Flower's ``SecAggPlusWorkflow`` + ``secaggplus_mod``): the server learns only
    the weighted sum of the round's updates, never one client's.

    Each client masks ``[w, w * update]`` (w: its example count over ``max_weight``) with
    pairwise masks agreed with its neighbours and a private mask, and Shamir-shares its keys
    so the masks of a client that drops out mid-round can still be removed. Runs in
    ``federated simulate`` and, on Flower's Deployment Engine, in ``federated server`` /
    ``client`` (docs/federated.md).
    """

    shares: int | float = Field(
        1.0,
        gt=0,
        description="Neighbours each client's keys are shared with: an int > 2, or a fraction "
        "of the round's clients (Flower's num_shares).",
    )
    threshold: int | float = Field(
        0.67,
        gt=0,
        description="Shares needed to rebuild a key: an int < shares (1 means all of them), "
        "or a fraction of shares. More than half keeps a curious server from rebuilding a "
        "live client's mask; shares - threshold is how many dropouts a round survives.",
    )
    clipping_range: float = Field(
        8.0, gt=0, description="Update entries are clipped to +-this before quantisation."
    )
    quantization_range: int = Field(
        2**22, gt=0, description="Integer levels of the quantised update (precision)."
    )
    max_weight: float | None = Field(
        None,
        gt=0,
        description="Largest example count a client may weigh in with (Flower caps larger "
        "ones); unset: the largest simulated client's (required across machines).",
    )

    @model_validator(mode="after")
    def _flower_rules(self) -> SecureAggregationConfig:
        # Flower's own checks, here so a bad recipe fails before any work starts
        if isinstance(self.shares, int) and self.shares == 2:
            raise ValueError("secure_aggregation.shares: an integer must be greater than 2")
        if isinstance(self.threshold, float) and self.threshold > 1:
            raise ValueError("secure_aggregation.threshold: a fraction must be <= 1")
        if isinstance(self.shares, float) and self.shares > 1:
            # Flower reads a float as a fraction of the clients: 3.0 would mean 3x them
            raise ValueError(
                "secure_aggregation.shares: a fraction must be <= 1 (write 3, not 3.0, "
                "for three shares)"
            )
        if (
            isinstance(self.shares, int)
            and isinstance(self.threshold, int)
            and self.shares > 1
            and self.threshold >= self.shares
        ):
            raise ValueError("secure_aggregation.threshold must be less than shares")
        if self.quantization_range >= 2**31:  # Flower quantises into int32
            raise ValueError("secure_aggregation.quantization_range must be below 2**31")
        return self


class FederatedConfig(StrictModel):
    """Clients tune one adapter together; only adapter weights leave a client."""

    strategy: Literal["fedavg", "fedprox"] = Field(
        "fedavg", description="Flower aggregation: FedAvg, or FedProx (proximal local loss)."
    )
    proximal_mu: float = Field(
        0.01, ge=0, description="fedprox: weight mu of the (mu/2)||w - w_global||^2 term."
    )
    rounds: int = Field(5, ge=1, description="Federated rounds.")
    local_epochs: float = Field(1.0, gt=0, description="Local epochs per round (E).")
    min_clients: int = Field(
        2, ge=1, description="Clients needed to run a round; fewer results fail the round."
    )
    wait_for_clients: int | None = Field(
        None,
        ge=1,
        description="Clients to wait for before the first round (default: min_clients); "
        "later rounds run with whoever of them is still connected (>= min_clients).",
    )
    round_timeout: float | None = Field(
        None,
        gt=0,
        description="Seconds a round waits for client results (None: forever) and for "
        "min_clients connected clients (None: 600 s; then the round is skipped).",
    )
    address: str = Field("0.0.0.0:9092", description="Server listen address (host:port).")
    token_env: str | None = Field(
        None,
        description="Environment variable holding a shared token: clients sign their "
        "results with it and the server drops results that are not signed with it.",
    )
    tls_certificates: list[RecipePath] | None = Field(
        None,
        min_length=3,
        max_length=3,
        description="Server TLS: [CA certificate, server certificate, server key] PEM files "
        "(clients pass the CA with --root-cert).",
    )
    local_dp: LocalDPConfig | None = Field(
        None, description="Local differential privacy on client updates (unset: off)."
    )
    secure_aggregation: SecureAggregationConfig | None = Field(
        None, description="SecAgg+ secure aggregation of client updates (unset: off)."
    )
    clients: list[RecipePath] = Field(
        default_factory=list,
        description="Simulation: one data file or folder per client, read with mix.real's "
        "column mapping (unset: partition mix.real with `partition`).",
    )
    partition: PartitionConfig = Field(default_factory=PartitionConfig)

    @model_validator(mode="after")
    def _enough(self) -> FederatedConfig:
        if self.wait_for_clients is not None and self.wait_for_clients < self.min_clients:
            raise ValueError("federated.wait_for_clients must be >= min_clients")
        if len(self.clients) == 1:
            raise ValueError("federated.clients: list at least two data sources")
        if self.secure_aggregation is not None and self.min_clients < 2:
            raise ValueError(
                "federated.min_clients must be >= 2 with secure_aggregation (SecAgg+ needs "
                "two live clients to hide either)"
            )
        return self

    def initial_clients(self) -> int:
        return self.wait_for_clients or self.min_clients
