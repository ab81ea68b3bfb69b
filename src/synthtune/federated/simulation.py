"""Simulation on one machine: the server and N clients over Flower's gRPC on loopback.

Flower's own simulation engine needs Ray (``flwr[simulation]``); we run the real server and
client nodes instead, as threads of this process talking gRPC on 127.0.0.1 - the same code
path as a deployment, no Ray. With ``federated.secure_aggregation`` the rounds run Flower's
SecAgg+ workflow over in-process ClientApps instead (``secure.py``). Clients come from
``federated.clients`` (one data source each) or from a partition of ``mix.real`` (IID, or
non-IID by a slot / the label). With ``baselines`` the same budget (rounds x local epochs)
also trains each client alone and all data pooled (centralised), every adapter scored on the
union of the clients' val splits.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from synthtune.config import Recipe
from synthtune.errors import RecipeError, StageError
from synthtune.federated.client import TRAINING_LOCK, AdapterClient, client_app
from synthtune.federated.local_round import train_round, validation_loss
from synthtune.federated.partition import partition
from synthtune.federated.privacy import local_dp_mod
from synthtune.federated.server import (
    fresh_adapter,
    serve_federation,
    shared_token,
    tls_certificates,
)
from synthtune.federated.transport import run_client
from synthtune.federated.workspace import (
    check_recipe,
    client_records,
    round_recipe,
    shared_base,
    write_client_tables,
)
from synthtune.realdata import load_real
from synthtune.records import Record
from synthtune.store import RunStore

Log = Callable[[str], None]


def client_datasets(recipe: Recipe) -> list[list[Record]]:
    """Each simulated client's records (module docstring)."""
    cfg = recipe.federated
    if cfg.clients:
        return [client_records(recipe, path) for path in cfg.clients]
    if recipe.mix.real is None:
        raise StageError("federated: set federated.clients, or mix.real to partition")
    return partition(
        load_real(recipe.mix.real), cfg.partition.clients, cfg.partition.by, recipe.seed
    )


def client_dirs(recipe: Recipe, root: Path) -> list[Path]:
    """Write each client's run directory (``mix/train``, ``mix/val``) under ``root``."""
    dirs = []
    for i, records in enumerate(client_datasets(recipe)):
        folder = root / "federated" / "clients" / f"client-{i}"
        write_client_tables(recipe, records, folder)
        dirs.append(folder)
    return dirs


def _run_clients(
    recipe: Recipe, dirs: list[Path], base: str, address: str, mods: list[Any]
) -> list[threading.Thread]:
    token = shared_token(recipe)
    certificates = tls_certificates(recipe)
    root = certificates[0] if certificates else None  # the CA: clients verify the server
    threads = []
    for folder in dirs:
        app = client_app(AdapterClient(recipe, folder, base, token), mods)
        thread = threading.Thread(target=run_client, args=(app, address, root), daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def simulate(
    recipe: Recipe,
    runs: Path,
    baselines: bool = False,
    log: Log = print,
    extra_mods: list[Any] | None = None,
) -> dict[str, Any]:
    """Run the federation of ``recipe`` on loopback; returns (and writes) its summary."""
    check_recipe(recipe)
    root = Path(runs) / recipe.name
    dirs = client_dirs(recipe, root)
    sizes = [len(RunStore(d).read_table("mix", "train")) for d in dirs]
    cfg = recipe.federated
    if cfg.secure_aggregation is not None:
        check_secure(recipe, sizes)
    if cfg.wait_for_clients is None:  # a simulation knows its clients: start with all of them
        federated = cfg.model_copy(update={"wait_for_clients": len(dirs)})
        recipe = recipe.model_copy(update={"federated": federated})
    base = shared_base(recipe, root, log)
    mods = [local_dp_mod(cfg.local_dp)] if cfg.local_dp else []
    mods += extra_mods or []
    if cfg.secure_aggregation is not None:
        summary = _simulate_secure(recipe, root, dirs, base, mods, log)
    else:
        summary = _simulate_grpc(recipe, root, dirs, base, mods, log)
    summary["clients"] = [
        {"client": d.name, "train": size} for d, size in zip(dirs, sizes, strict=True)
    ]
    if baselines:
        summary["baselines"] = compare_baselines(recipe, root, dirs, base, log)
    RunStore(root).write_json("federated", "summary.json", summary)
    return summary


def check_secure(recipe: Recipe, sizes: list[int]) -> None:
    """What SecAgg+ needs of this federation (``sizes``: each client's training records),
    checked before any training: Flower would halt every round, or wrap the integer sum
    around, only once the rounds run."""
    secure = recipe.federated.secure_aggregation
    assert secure is not None
    clients, largest = len(sizes), max(sizes)
    problems = []
    if isinstance(secure.shares, int) and secure.shares > clients:
        problems.append(
            f"federated.secure_aggregation.shares: {secure.shares} > the {clients} clients"
        )
    if clients * secure.quantization_range >= 2**32:
        problems.append(
            "federated.secure_aggregation.quantization_range: clients x range must stay "
            f"below 2**32 (the masked sum's modulus); {clients} clients allow < "
            f"{2**32 // clients}"
        )
    if secure.max_weight is not None and secure.max_weight < largest:
        problems.append(
            f"federated.secure_aggregation.max_weight: {secure.max_weight:g} < {largest}, the "
            "largest client's training records (Flower would cap its weight)"
        )
    if problems:
        raise RecipeError(str(recipe.source), problems)


def _simulate_secure(
    recipe: Recipe, root: Path, dirs: list[Path], base: str, mods: list[Any], log: Log
) -> dict[str, Any]:
    """SecAgg+: Flower's message-API workflow over in-process ClientApps (secure.py)."""
    from synthtune.federated.secure import run_secure, secure_client_mods

    cfg = recipe.federated
    assert cfg.secure_aggregation is not None
    token = shared_token(recipe)
    parties = [AdapterClient(recipe, folder, base, token) for folder in dirs]
    apps = [client_app(party, secure_client_mods(mods)) for party in parties]
    largest = max(party.train_size for party in parties)
    secure = cfg.secure_aggregation

    def transport(strategy: Any, rounds: int) -> None:
        run_secure(strategy, apps, rounds, cfg.round_timeout, secure, largest)

    return serve_federation(recipe, root, log=log, transport=transport)


def _simulate_grpc(
    recipe: Recipe, root: Path, dirs: list[Path], base: str, mods: list[Any], log: Log
) -> dict[str, Any]:
    """Flower's gRPC server and one gRPC client per party on loopback, as threads."""
    ready = threading.Event()
    bound: list[str] = []

    def on_ready(address: str) -> None:
        bound.append(address)
        ready.set()

    outcome: dict[str, Any] = {}

    def serve() -> None:
        try:
            outcome["summary"] = serve_federation(recipe, root, "127.0.0.1:0", on_ready, log)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc
            ready.set()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    ready.wait()
    if "error" in outcome:
        raise outcome["error"]
    clients = _run_clients(recipe, dirs, base, bound[0], mods)
    server.join()
    for thread in clients:
        thread.join(timeout=30)
    if "error" in outcome:
        raise outcome["error"]
    summary: dict[str, Any] = outcome["summary"]
    return summary


def compare_baselines(
    recipe: Recipe, root: Path, dirs: list[Path], base: str, log: Log = print
) -> dict[str, Any]:
    """Union-val loss of: the initial adapter, each client alone, all data pooled, and the
    federated adapter. Local and pooled runs get the federation's epochs (rounds x E: the
    same total compute); ``centralised_same_steps`` gets the optimiser steps one client
    takes in the federation (rounds x E epochs of a 1/N share: the same wall-clock when
    clients train in parallel), since FedAvg averages N updates where pooled training
    would take them one after the other."""
    from synthtune.federated.params import adapter_arrays
    from synthtune.federated.server import latest_checkpoint

    cfg = recipe.federated
    epochs = cfg.rounds * cfg.local_epochs
    same_budget = round_recipe(recipe, base, epochs)
    model, _ = fresh_adapter(recipe, base)
    start = adapter_arrays(model)
    stores = [RunStore(d) for d in dirs]
    union_val = [r for s in stores for r in s.read_table("mix", "val")]
    pooled = root / "federated" / "centralised"
    store = RunStore(pooled)
    store.write_table("mix", "train", [r for s in stores for r in s.read_table("mix", "train")])
    store.write_table("mix", "val", union_val)

    def score(arrays: Any) -> float:
        with TRAINING_LOCK:
            return round(validation_loss(same_budget, base, arrays, union_val)[0], 4)

    result: dict[str, Any] = {"epochs": epochs, "union_val_records": len(union_val)}
    result["initial"] = score(start)
    local = {}
    for folder in [*dirs, pooled]:
        log(f"federated: baseline training on {folder.name} alone ({epochs:g} epochs)")
        arrays, _ = train_round(same_budget, folder, 0, start, label="baseline")
        local[folder.name] = score(arrays)
    result["centralised"] = local.pop("centralised")
    result["local"] = local
    same_steps = round_recipe(recipe, base, epochs / len(dirs))
    arrays, _ = train_round(same_steps, pooled, 0, start, label="baseline-same-steps")
    result["centralised_same_steps"] = score(arrays)
    result["same_steps_epochs"] = round(epochs / len(dirs), 3)
    _, final = latest_checkpoint(RunStore(root).path("federated", "global"))
    result["federated"] = score(final) if final is not None else None
    return result
