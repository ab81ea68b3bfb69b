"""The server side of a federation: the shared base, resume, the strategy, the summary.

Results live in the server's run directory (``runs/<name>/``)::

    federated/global/round-NNN.npz (+ .json)   the global adapter after each round
    federated/summary.json                     per-round table, bytes, privacy budget
    federated/adapter/                         the final global adapter (peft folder)

A restarted server resumes from the newest ``round-NNN.npz`` and runs the remaining rounds.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from synthtune.config import Recipe
from synthtune.errors import RecipeError
from synthtune.federated.params import (
    adapter_arrays,
    base_fingerprint,
    full_model_bytes,
    load_adapter_arrays,
    load_arrays,
)
from synthtune.federated.privacy import privacy_spent
from synthtune.federated.workspace import shared_base
from synthtune.models import seed_everything
from synthtune.store import RunStore

Log = Callable[[str], None]
# Runs (strategy, rounds): the gRPC server by default; SecAgg+ simulation passes its own.
Transport = Callable[[Any, int], None]


def fresh_adapter(recipe: Recipe, base: str) -> tuple[Any, Any]:
    """(peft model, tokenizer): ``base`` with a newly initialised adapter (seeded)."""
    from synthtune.models import load_causal_lm
    from synthtune.train.methods import METHODS

    seed_everything(recipe.seed)
    model, tokenizer = load_causal_lm(base, dtype="float32")
    return METHODS.get(recipe.train.method).prepare(model, recipe.train), tokenizer


def latest_checkpoint(folder: Path) -> tuple[int, list[np.ndarray] | None]:
    """(round, arrays) of the newest complete checkpoint, or (0, None)."""
    done = sorted(folder.glob("round-*.json"), key=lambda p: int(p.stem.split("-")[1]))
    if not done:
        return 0, None
    newest = done[-1].with_suffix(".npz")
    return int(newest.stem.split("-")[1]), load_arrays(newest)


def resume_point(checkpointed: int, rows: list[dict[str, Any]]) -> tuple[int, list[dict[str, Any]]]:
    """(last finished round, the summary rows up to it). A round that ran but did not
    aggregate (too few results, or skipped for lack of clients) is finished too: a restart
    continues after it, from the newest checkpoint (the adapter that round kept)."""
    finished = [r["round"] for r in rows if "clients_ok" in r or r.get("clients_sampled") == 0]
    done = max([checkpointed, *finished])
    return done, [r for r in rows if r["round"] <= done]


def shared_token(recipe: Recipe) -> str | None:
    """The token from ``federated.token_env``; an unset variable is an error, not 'no token'."""
    name = recipe.federated.token_env
    if name is None:
        return None
    token = os.environ.get(name)
    if not token:
        raise RecipeError(
            str(recipe.source), [f"federated.token_env: environment variable {name} is not set"]
        )
    return token


def tls_certificates(recipe: Recipe) -> tuple[bytes, bytes, bytes] | None:
    paths = recipe.federated.tls_certificates
    if paths is None:
        return None
    ca, cert, key = (Path(p).read_bytes() for p in paths)
    return ca, cert, key


def serve_federation(
    recipe: Recipe,
    run_dir: Path,
    address: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    log: Log = print,
    transport: Transport | None = None,
) -> dict[str, Any]:
    """Run (or resume) the federation of ``recipe`` as its server; returns the summary.

    ``transport`` runs the rounds; unset, Flower's gRPC server at ``address``."""
    from flwr.common import ndarrays_to_parameters

    from synthtune.federated.strategy import (
        FederationStrategy,
        flower_strategy,
        parameter_bytes,
    )
    from synthtune.federated.transport import run_server

    cfg = recipe.federated
    store = RunStore(run_dir)
    base = shared_base(recipe, Path(run_dir), log)
    model, tokenizer = fresh_adapter(recipe, base)
    fingerprint, full_bytes = base_fingerprint(model), full_model_bytes(model)
    checkpoints = store.path("federated", "global")
    done, arrays = latest_checkpoint(checkpoints)
    earlier: list[dict[str, Any]] = []
    summary_path = store.path("federated", "summary.json")
    if summary_path.exists():
        rows = store.read_json("federated", "summary.json")["rounds"]
        done, earlier = resume_point(done, rows)
    if done:
        log(f"federated: resuming after round {done} from {checkpoints}")
    start = arrays if arrays is not None else adapter_arrays(model)

    def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
        # every round whose instructions went out spent privacy, aggregated or not
        complete = [r for r in rows if r.get("clients_sampled")]
        return {
            "strategy": cfg.strategy,
            "method": recipe.train.method,
            "base": recipe.train.base,
            "base_fingerprint": fingerprint,
            "rounds_planned": cfg.rounds,
            "local_epochs": cfg.local_epochs,
            "adapter_bytes": parameter_bytes(ndarrays_to_parameters(start)),
            "full_ft_bytes": full_bytes,
            "privacy": privacy_spent(cfg.local_dp, len(complete)),
            "secure_aggregation": (
                cfg.secure_aggregation.model_dump() if cfg.secure_aggregation else None
            ),
            "rounds": rows,
        }

    def write(rows: list[dict[str, Any]]) -> None:
        store.write_json("federated", "summary.json", summary(earlier + rows))

    def fit_config(server_round: int) -> dict[str, Any]:
        return {"round": done + server_round, "base": fingerprint}

    result = summary(earlier)
    if done < cfg.rounds:
        inner = flower_strategy(cfg, ndarrays_to_parameters(start), fit_config)
        strategy = FederationStrategy(
            inner, cfg, checkpoints, done + 1, full_bytes, shared_token(recipe), log, write
        )
        if transport is not None:
            transport(strategy, cfg.rounds - done)
        else:
            run_server(
                strategy,
                address or cfg.address,
                cfg.rounds - done,
                cfg.round_timeout,
                tls_certificates(recipe),
                on_ready,
            )
        result = summary(earlier + strategy.rounds)
        store.write_json("federated", "summary.json", result)
    final_round, final = latest_checkpoint(checkpoints)
    if final is not None:
        load_adapter_arrays(model, final)
        model.save_pretrained(store.path("federated", "adapter"))
        tokenizer.save_pretrained(store.path("federated", "adapter"))
        result["final_round"] = final_round
    return result
