"""The Flower apps of a SecAgg+ deployment: ``server_app`` and ``client_app``.

Flower's Deployment Engine runs them: the SuperLink (started by ``synthtune federated
server``) spawns the ServerApp for the run ``flwr run`` submits, and each SuperNode (started
by ``synthtune federated client``) spawns the ClientApp for every message it receives, as a
fresh process. So this module imports nothing heavy at the top (most messages are SecAgg+
key exchanges that never touch the model), and everything a process needs comes from its
configs: the server's ``run_config`` (``recipe``, ``run-dir``) and each node's
``node_config`` (``recipe``, ``run-dir``, ``base``), written by ``deployment.py``.

The rounds are the same as in the simulation: ``secure.secure_rounds`` (Flower's
DefaultWorkflow with SecAgg+) driving ``FederationStrategy`` inside ``serve_federation``,
and clients that are ``AdapterClient`` over the party's own run directory.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.serverapp import ServerApp


@lru_cache(maxsize=2)
def _recipe(path: str) -> Any:
    from synthtune.config import load_recipe

    return load_recipe(Path(path))


def _client(context: Any) -> Any:
    from synthtune.federated.client import AdapterClient
    from synthtune.federated.server import shared_token

    node = context.node_config
    recipe = _recipe(str(node["recipe"]))
    run_dir, base = Path(str(node["run-dir"])), str(node["base"])
    return AdapterClient(recipe, run_dir, base, shared_token(recipe)).to_client()


def _local_dp(message: Any, context: Any, call_next: Any) -> Any:
    """The recipe's local DP (Flower's LocalDpMod), inside SecAgg+: noise before masking."""
    dp = _recipe(str(context.node_config["recipe"])).federated.local_dp
    if dp is None:
        return call_next(message, context)
    from synthtune.federated.privacy import local_dp_mod

    return local_dp_mod(dp)(message, context, call_next)


client_app = ClientApp(client_fn=_client, mods=[secaggplus_mod, _local_dp])
server_app = ServerApp()


@server_app.main()
def _serve(grid: Any, context: Any) -> None:
    from synthtune.federated.secure import secure_rounds
    from synthtune.federated.server import serve_federation

    recipe = _recipe(str(context.run_config["recipe"]))
    cfg = recipe.federated
    secure = cfg.secure_aggregation
    # checked before the SuperLink started (deployment.check_secure_deployment)
    assert secure is not None and secure.max_weight is not None

    def transport(strategy: Any, rounds: int) -> None:
        secure_rounds(
            grid, context, strategy, rounds, cfg.round_timeout, secure, secure.max_weight or 0
        )

    serve_federation(recipe, Path(str(context.run_config["run-dir"])), transport=transport)
