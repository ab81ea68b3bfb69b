"""Flower's networking, started from Python: a gRPC server node and client nodes.

We use Flower's long-running gRPC (bidirectional streaming) server and client as one
function call each (``flwr.server.superlink.fleet.grpc_bidi.start_grpc_server`` + ``Server``
+ ``run_fl``; ``flwr.compat.client.app.start_client_internal``). Flower 1.42 marks this
path deprecated in favour of SuperLink/SuperNode processes driven by ``flwr run``, but it is
the one that runs in-process, offline, without Ray and without a Flower app bundle, which is
what the simulation, the tests and a two-command deployment need (docs/federated.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flwr.server import History, Server, ServerConfig, SimpleClientManager
from flwr.server.server import run_fl
from flwr.server.strategy import Strategy


def run_server(
    strategy: Strategy,
    address: str,
    rounds: int,
    round_timeout: float | None = None,
    certificates: tuple[bytes, bytes, bytes] | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> History:
    """Serve ``rounds`` rounds at ``address`` (port 0: any free port) and return the history.

    ``on_ready`` receives the bound ``host:port`` once clients can connect.
    """
    from flwr.server.superlink.fleet.grpc_bidi.grpc_server import start_grpc_server

    manager = SimpleClientManager()
    grpc_server = start_grpc_server(
        client_manager=manager, server_address=address, certificates=certificates
    )
    try:
        if on_ready is not None:
            on_ready(grpc_server.bound_address)
        server = Server(client_manager=manager, strategy=strategy)
        return run_fl(server, ServerConfig(num_rounds=rounds, round_timeout=round_timeout))
    finally:
        grpc_server.stop(grace=1)


def run_client(app: Any, address: str, root_certificates: bytes | None = None) -> None:
    """Connect a ClientApp to the server at ``address``; returns when the server ends it.

    A refused connection is retried for up to a minute (the server may still be starting).
    """
    from flwr.compat.client.app import start_client_internal

    start_client_internal(
        server_address=address,
        node_config={},
        load_client_app_fn=lambda *_: app,
        root_certificates=root_certificates,
        insecure=root_certificates is None,
        max_wait_time=60,
    )
