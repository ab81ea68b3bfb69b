"""SecAgg+ across processes: Flower's Deployment Engine (a SuperLink, three SuperNodes and a
``flwr run``) started by ``federated.deployment`` on loopback, the apps being
``synthtune.federated.flower_app``; each party trains in its own processes on its own folder."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from synthtune.config import load_recipe
from synthtune.errors import RecipeError
from synthtune.federated.deployment import (
    check_secure_deployment,
    free_port,
    serve_secure,
    start_supernode,
    stop_supernode,
    supernode_command,
)
from synthtune.federated.params import load_arrays
from synthtune.federated.workspace import client_records, shared_base, write_client_tables
from tests.federated.conftest import write_federated_recipe


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_secagg_federation_across_processes(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_federated_recipe(
        tmp_path,
        tiny_model_dir,
        overrides={
            "federated": {
                "rounds": 1,
                "round_timeout": 300,
                "wait_for_clients": 3,
                "secure_aggregation": {"max_weight": 40},
            }
        },
    )
    recipe = load_recipe(path)
    port = free_port()
    server_dir = tmp_path / "runs" / "server"
    outcome: dict[str, Any] = {}

    def serve() -> None:
        try:
            outcome["summary"] = serve_secure(
                recipe, path, server_dir, f"127.0.0.1:{port}", log=lambda m: None
            )
        except BaseException as exc:  # re-raised below
            outcome["error"] = exc

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    deadline = time.monotonic() + 60
    while not _listening(port) and time.monotonic() < deadline and server.is_alive():
        time.sleep(0.2)  # the SuperLink is another process: poll its port
    parties, nodes = [], []
    try:
        for source in sorted((tmp_path / "data").glob("hospital-*.jsonl")):
            party = tmp_path / "runs" / source.stem
            write_client_tables(recipe, client_records(recipe, source), party)
            base = shared_base(recipe, party, lambda m: None)
            command = supernode_command(recipe, path, party, base, f"127.0.0.1:{port}", None)
            nodes.append(start_supernode(command, party))
            parties.append(party)
        server.join(timeout=600)
    finally:
        for node in nodes:
            stop_supernode(node)
    assert not server.is_alive()
    if "error" in outcome:
        raise outcome["error"]
    summary = outcome["summary"]
    (row,) = summary["rounds"]
    assert row["aggregated"] is True and row["clients_ok"] == len(parties) == 3
    assert row["secure_aggregation"] == "secagg+"  # set by the SecAgg+ workflow's wrapper
    assert row["val_loss"] is not None and row["val_count"] > 0
    first = load_arrays(server_dir / "federated" / "global" / "round-001.npz")
    assert first and all(a.size for a in first)
    assert (server_dir / "federated" / "adapter" / "adapter_config.json").exists()
    for party in parties:  # each party trained on its own folder, in its own processes
        assert list((party / "federated").glob("round-001*"))


def test_a_secagg_deployment_needs_max_weight(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_federated_recipe(
        tmp_path, tiny_model_dir, overrides={"federated": {"secure_aggregation": {}}}
    )
    with pytest.raises(RecipeError, match="max_weight: required across machines"):
        check_secure_deployment(load_recipe(path), [path])


def test_sigterm_stops_the_flower_processes_through_finally() -> None:
    # Flower processes live in their own session: a SIGTERM to synthtune must still reach
    # the `finally` that stops them, and the previous handler comes back afterwards
    import signal

    from synthtune.federated.deployment import stopped_by_signals

    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"), stopped_by_signals():
        try:
            signal.raise_signal(signal.SIGTERM)  # runs the handler before returning
            pytest.fail("the handler did not raise")
        finally:
            cleaned.append(True)
    assert cleaned == [True] and signal.getsignal(signal.SIGTERM) is before
