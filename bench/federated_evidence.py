"""Federated vs local-only vs centralised on the hospitals example (non-IID by symptom).

Runs ``synthtune federated simulate`` on ``examples/federated-hospitals`` (three hospitals,
each seeing three of the nine symptoms) with the baselines: every hospital training alone
and all records pooled, each for the federation's budget (rounds x local epochs), every
adapter scored by token-level loss on the union of the hospitals' validation splits. Prints
that table and the bytes one round sends (adapter vs a full fine-tuning update).

    .venv/bin/python bench/federated_evidence.py [--rounds N] [--out DIR] [--secure]

``--secure`` runs the federation with SecAgg+ (the server sees only each round's weighted
sum); the baselines do not depend on it, so the federated rows of two runs compare directly.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
import warnings
from pathlib import Path

from synthtune.config import load_recipe
from synthtune.federated.simulation import simulate

RECIPE = Path(__file__).resolve().parents[1] / "examples" / "federated-hospitals" / "recipe.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--out", type=Path, default=None, help="runs folder (default: temp)")
    parser.add_argument("--secure", action="store_true", help="SecAgg+ secure aggregation")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    recipe = load_recipe(RECIPE)
    update: dict = {"rounds": args.rounds} if args.rounds else {}
    if args.secure:
        from synthtune.config.federated import SecureAggregationConfig

        update["secure_aggregation"] = SecureAggregationConfig()
    if update:
        federated = recipe.federated.model_copy(update=update)
        recipe = recipe.model_copy(update={"federated": federated})
    out = args.out or Path(tempfile.mkdtemp(prefix="federated-evidence-"))
    started = time.perf_counter()
    import flwr.common  # noqa: F401  (its logger exists once imported)

    logging.getLogger("flwr").setLevel(logging.WARNING)
    summary = simulate(recipe, out, baselines=True, log=lambda m: None)
    seconds = time.perf_counter() - started
    b = summary["baselines"]
    print(f"union validation loss ({b['union_val_records']} records), {b['epochs']:g} epochs each")
    print(f"  initial adapter        {b['initial']:.4f}")
    for name, loss in b["local"].items():
        print(f"  {name} alone         {loss:.4f}")
    print(f"  federated ({summary['strategy']})     {b['federated']:.4f}")
    print(f"  centralised (pooled)   {b['centralised']:.4f}")
    print(
        f"  centralised, same steps as one client ({b['same_steps_epochs']:g} epochs) "
        f"{b['centralised_same_steps']:.4f}"
    )
    best_local = min(b["local"].values())
    print(f"federated beats the best local-only by {best_local - b['federated']:.4f}")
    print(f"gap to centralised (same epochs) {b['federated'] - b['centralised']:.4f}")
    for row in summary["rounds"]:
        print(
            f"round {row['round']}: union val {row['val_loss']:.4f}, "
            f"{row['clients_ok']} clients, {row['bytes_up']:,} bytes up, "
            f"{row['bytes_down']:,} bytes down"
        )
    ratio = summary["full_ft_bytes"] / summary["adapter_bytes"]
    print(
        f"one update: adapter {summary['adapter_bytes']:,} bytes vs full fine-tuning "
        f"{summary['full_ft_bytes']:,} bytes ({ratio:.1f}x less)"
    )
    print(f"{seconds:.0f} s in all; run folder {out}")


if __name__ == "__main__":
    main()
