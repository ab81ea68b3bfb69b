"""A client killed in the middle of a round does not stop the federation: the round is
aggregated from the clients that answered, and the next round runs without it."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from synthtune.config import load_recipe
from synthtune.federated.client import AdapterClient, client_app
from synthtune.federated.server import serve_federation
from synthtune.federated.transport import run_client
from synthtune.federated.workspace import client_records, write_client_tables


@pytest.mark.slow
def test_a_client_killed_mid_round_does_not_break_the_round(
    federated_recipe: Path, tmp_path: Path
) -> None:
    data = yaml.safe_load(federated_recipe.read_text())
    data["federated"].update({"rounds": 2, "min_clients": 2, "wait_for_clients": 3})
    federated_recipe.write_text(yaml.safe_dump(data))
    recipe = load_recipe(federated_recipe)
    runs = tmp_path / "runs"
    folder = federated_recipe.parent / "data"

    bound: list[str] = []
    ready = threading.Event()
    outcome: dict[str, Any] = {}

    def on_ready(address: str) -> None:
        bound.append(address)
        ready.set()

    def serve() -> None:
        outcome["summary"] = serve_federation(
            recipe, runs / recipe.name, "127.0.0.1:0", on_ready, log=lambda m: None
        )

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    assert ready.wait(timeout=60)

    # the client to kill: the real CLI in its own process
    victim = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "synthtune",
            "federated",
            "client",
            str(federated_recipe),
            "--server",
            bound[0],
            "--data",
            str(folder / "hospital-c.jsonl"),
            "--out",
            str(runs),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    clients = []
    for name in ("hospital-a", "hospital-b"):
        run_dir = runs / f"client-{name}"
        write_client_tables(recipe, client_records(recipe, folder / f"{name}.jsonl"), run_dir)
        app = client_app(AdapterClient(recipe, run_dir, recipe.train.base), [])
        thread = threading.Thread(target=run_client, args=(app, bound[0]), daemon=True)
        thread.start()
        clients.append(thread)
    try:
        assert victim.stdout is not None
        for line in victim.stdout:  # blocks until the client says it started round 1
            if line.startswith("round 1: training"):
                break
        victim.kill()
        assert victim.wait(timeout=30) != 0
    finally:
        victim.kill()
    server.join(timeout=120)
    assert not server.is_alive()

    first, second = outcome["summary"]["rounds"]
    assert first["clients_sampled"] == 3
    assert (first["clients_ok"], first["clients_failed"], first["aggregated"]) == (2, 1, True)
    assert (second["clients_ok"], second["aggregated"]) == (2, True)
    assert second["val_loss"] is not None
