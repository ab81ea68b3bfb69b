"""The Flower client: trains the received adapter on this party's own run directory.

What leaves the client: the adapter arrays after the round (clipped and noised first when
``federated.local_dp`` is set), the number of training examples (the FedAvg weight), the
validation loss and its token count, the mean training loss and the seconds spent, and the
token signature. Records, texts, labels and gradients never do (tests/federated checks the
messages).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flwr.client import NumPyClient

from synthtune.config import Recipe
from synthtune.errors import StageError
from synthtune.federated.local_round import train_round, validation_loss
from synthtune.federated.params import adapter_arrays, base_fingerprint
from synthtune.federated.privacy import SIGNATURE, sign
from synthtune.federated.workspace import round_recipe
from synthtune.store import RunStore

# Simulation runs its clients as threads of one process: one loads a model or trains at a time
# (transformers' loading switches the process to meta-device tensors for a while, so it is not
# thread-safe, and training clients would only compete for the same cores). The networking
# between them and the server stays real.
TRAINING_LOCK = threading.Lock()


class AdapterClient(NumPyClient):
    """One party. ``run_dir`` holds its ``mix/train`` and ``mix/val`` tables.

    ``on_fit`` is called when a round's training starts (tests use it to kill a client
    mid-round); ``base`` is the shared base model's path or id.
    """

    def __init__(
        self,
        recipe: Recipe,
        run_dir: Path,
        base: str,
        token: str | None = None,
        on_fit: Callable[[int], None] | None = None,
    ) -> None:
        self.recipe = round_recipe(recipe, base, recipe.federated.local_epochs)
        self.run_dir = Path(run_dir)
        self.base = base
        self.token = token
        self.on_fit = on_fit
        store = RunStore(self.run_dir)
        self.train_size = len(store.read_table("mix", "train"))
        self.val_records = store.read_table("mix", "val")
        self._fingerprint: str | None = None

    def _model(self) -> Any:
        from synthtune.models import load_causal_lm
        from synthtune.train.methods import METHODS

        cfg = self.recipe.train
        model, _ = load_causal_lm(self.base, dtype="float32")
        return METHODS.get(cfg.method).prepare(model, cfg)

    def _check_base(self, config: dict[str, Any]) -> None:
        expected = config.get("base")
        if self._fingerprint is None:
            self._fingerprint = base_fingerprint(self._model())
        if expected is not None and expected != self._fingerprint:
            raise StageError(
                f"federated: this client's base model ({self._fingerprint}) differs from the "
                f"server's ({expected}); every party must load the same train.base"
            )

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return adapter_arrays(self._model())

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        round_number = int(config["round"])
        if self.on_fit is not None:
            self.on_fit(round_number)
        started = time.perf_counter()
        with TRAINING_LOCK:
            self._check_base(config)
            arrays, summary = train_round(
                self.recipe,
                self.run_dir,
                round_number,
                parameters,
                float(config.get("proximal_mu", 0.0)),
            )
        metrics: dict[str, Any] = {
            "train_examples": self.train_size,
            "seconds": round(time.perf_counter() - started, 2),
        }
        if summary.get("train_loss") is not None:
            metrics["train_loss"] = float(summary["train_loss"])
        if self.token is not None:
            metrics[SIGNATURE] = sign(self.token, round_number, self.train_size)
        return arrays, self.train_size, metrics

    def evaluate(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]]:
        with TRAINING_LOCK:
            loss, count = validation_loss(self.recipe, self.base, parameters, self.val_records)
        return loss, count, {}


def client_app(client: AdapterClient, mods: list[Any]) -> Any:
    """A Flower ClientApp around ``client`` with the given mods (local DP, probes)."""
    from flwr.clientapp import ClientApp

    return ClientApp(client_fn=lambda context: client.to_client(), mods=mods)
