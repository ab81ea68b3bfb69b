"""``synthtune federated ...``: simulate on one machine, or run a server and its clients.

Thin commands over :mod:`synthtune.federated`; Flower and torch are imported inside the
commands so ``synthtune --help`` stays fast.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from synthtune.cli_common import console, out
from synthtune.cli_common import fail as _fail
from synthtune.errors import SynthtuneError

federated_app = typer.Typer(
    help="Federated fine-tuning on Flower: parties tune one adapter, records stay local.",
    no_args_is_help=True,
)

RecipeArg = Annotated[Path, typer.Argument(help="Recipe YAML file.", show_default=False)]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Folder holding run directories.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Show Flower's own log.")]


def _setup(recipe_path: Path, verbose: bool) -> Any:
    from synthtune.config import load_recipe
    from synthtune.federated.workspace import check_recipe

    recipe = load_recipe(recipe_path)
    check_recipe(recipe)
    import flwr.common  # noqa: F401  (configures the "flwr" logger, which we then tune)

    logging.getLogger("flwr").setLevel(logging.INFO if verbose else logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    return recipe


def _log(message: str) -> None:
    console.print(message, soft_wrap=True)


def rounds_table(summary: dict[str, Any]) -> Table:
    """Per-round table: clients, losses, bytes up (adapter) vs a full fine-tuning update."""
    table = Table(title=f"federated {summary['strategy']} / {summary['method']}")
    for column in ("round", "clients ok/failed", "train loss", "union val loss", "bytes up"):
        table.add_column(column)
    for row in summary["rounds"]:
        train, val = row.get("train_loss"), row.get("val_loss")
        table.add_row(
            str(row["round"]),
            f"{row.get('clients_ok', 0)}/{row.get('clients_failed', 0)}",
            "" if train is None else f"{train:.4f}",
            "" if val is None else f"{val:.4f}",
            f"{row.get('bytes_up', 0):,}",
        )
    return table


def _print_summary(summary: dict[str, Any]) -> None:
    out.print(rounds_table(summary))
    out.print(
        f"one update: adapter {summary['adapter_bytes']:,} bytes vs full fine-tuning "
        f"{summary['full_ft_bytes']:,} bytes"
    )
    if summary.get("privacy"):
        p = summary["privacy"]
        out.print(
            f"local DP: epsilon {p['epsilon']:g}, delta {p['delta']:g} ({p['rounds']} rounds)"
        )
    if summary.get("secure_aggregation"):
        out.print("secure aggregation (SecAgg+): the server saw only each round's weighted sum")
    baselines = summary.get("baselines")
    if baselines:
        local = ", ".join(f"{k} {v:.4f}" for k, v in baselines["local"].items())
        out.print(
            f"union val loss: initial {baselines['initial']:.4f}, local-only {local}, "
            f"federated {baselines['federated']:.4f}, centralised {baselines['centralised']:.4f} "
            f"(same steps as one client: {baselines['centralised_same_steps']:.4f})"
        )


def _report(run_dir: Path) -> None:
    from synthtune.report.html import build_report

    out.print(f"report: {build_report(run_dir)}", soft_wrap=True)


@federated_app.command()
def simulate(
    recipe: RecipeArg,
    runs: OutOpt = Path("runs"),
    baselines: Annotated[
        bool,
        typer.Option(help="Also train each client alone and all data pooled, for comparison."),
    ] = True,
    verbose: VerboseOpt = False,
) -> None:
    """Server and clients on this machine (loopback gRPC): federated.clients or a partition."""
    from synthtune.federated.simulation import simulate as run_simulation

    try:
        loaded = _setup(recipe, verbose)
        summary = run_simulation(loaded, runs, baselines=baselines, log=_log)
        _print_summary(summary)
        _report(runs / loaded.name)
    except (SynthtuneError, KeyboardInterrupt) as exc:
        raise _fail(exc) from None


@federated_app.command()
def server(
    recipe: RecipeArg,
    runs: OutOpt = Path("runs"),
    address: Annotated[
        str | None, typer.Option(help="host:port to listen on (default: federated.address).")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Run the federation's server; resumes after the last checkpointed round.

    With federated.secure_aggregation: a Flower SuperLink and one `flwr run` (SecAgg+)."""
    from synthtune.federated.server import serve_federation, shared_token

    try:
        loaded = _setup(recipe, verbose)
        run_dir = runs / loaded.name
        if loaded.federated.secure_aggregation is not None:
            from synthtune.federated.deployment import serve_secure

            shared_token(loaded)  # a missing token variable fails here, not in a Flower process
            where = address or loaded.federated.address  # serve_secure checks the recipe first
            summary = serve_secure(loaded, recipe, run_dir, where, _log)
        else:

            def ready(bound: str) -> None:
                _log(f"federated: server listening on {bound}")

            summary = serve_federation(loaded, run_dir, address, ready, _log)
        _print_summary(summary)
        _report(run_dir)
    except (SynthtuneError, KeyboardInterrupt) as exc:
        raise _fail(exc) from None


@federated_app.command()
def client(
    recipe: RecipeArg,
    server_address: Annotated[
        str, typer.Option("--server", help="Server host:port.", show_default=False)
    ],
    data: Annotated[
        Path,
        typer.Option(help="This party's data (file or folder, read with mix.real's mapping)."),
    ],
    name: Annotated[
        str | None, typer.Option(help="Client name (default: the data's file name).")
    ] = None,
    runs: OutOpt = Path("runs"),
    root_cert: Annotated[
        Path | None, typer.Option(help="CA certificate (PEM) of a TLS server.")
    ] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Join a federation: train the global adapter on DATA each round; DATA stays here."""
    from synthtune.federated.client import AdapterClient, client_app
    from synthtune.federated.privacy import local_dp_mod
    from synthtune.federated.server import shared_token
    from synthtune.federated.transport import run_client
    from synthtune.federated.workspace import client_records, shared_base, write_client_tables

    try:
        loaded = _setup(recipe, verbose)
        run_dir = runs / f"{loaded.name}-{name or data.stem}"
        secure = loaded.federated.secure_aggregation is not None
        if secure:
            from synthtune.federated.deployment import check_secure_deployment

            check_secure_deployment(loaded, [recipe.resolve(), run_dir.resolve()])
            shared_token(loaded)  # a missing token variable fails here, not in a Flower process
        sizes = write_client_tables(loaded, client_records(loaded, data), run_dir)
        _log(f"federated: client data {sizes} in {run_dir}")
        base = shared_base(loaded, run_dir, _log)

        def announce(round_number: int) -> None:
            out.print(f"round {round_number}: training on {sizes['train']} records")
            out.file.flush()

        if secure:
            _supernode(loaded, recipe, run_dir, base, server_address, root_cert)
            return
        party = AdapterClient(loaded, run_dir, base, shared_token(loaded), announce)
        mods = [local_dp_mod(loaded.federated.local_dp)] if loaded.federated.local_dp else []
        # the recipe's CA unless --root-cert names another: a TLS federation never falls back
        # to plaintext because a flag was forgotten
        tls = loaded.federated.tls_certificates
        ca = root_cert or (Path(tls[0]) if tls else None)
        certificate = ca.read_bytes() if ca else None
        run_client(client_app(party, mods), server_address, certificate)
        out.print("federated: the server ended the federation")
    except (SynthtuneError, KeyboardInterrupt) as exc:
        raise _fail(exc) from None


def _supernode(
    loaded: Any, recipe: Path, run_dir: Path, base: str, server: str, root_cert: Path | None
) -> None:
    """SecAgg+: this party as a Flower SuperNode, until the operator stops it (Ctrl-C)."""
    from synthtune.federated.deployment import (
        log_tail,
        start_supernode,
        stop_supernode,
        stopped_by_signals,
        supernode_command,
    )

    tls = loaded.federated.tls_certificates
    ca = root_cert or (Path(tls[0]) if tls else None)
    command = supernode_command(loaded, recipe, run_dir, base, server, ca)
    log = run_dir / "federated" / "flower" / "supernode.log"
    with stopped_by_signals():
        node = start_supernode(command, run_dir)
        _log(
            f"federated: SuperNode (SecAgg+) connecting to {server}; it trains when the "
            f"server's rounds reach it; log {log}; Ctrl-C to leave"
        )
        try:
            code = node.wait()
        except KeyboardInterrupt:
            out.print("federated: left the federation")
            return
        finally:
            stop_supernode(node)
    raise SynthtuneError(f"federated: flower-supernode exited with {code}: {log_tail(log)}")
