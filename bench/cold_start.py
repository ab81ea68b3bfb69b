"""CLI cold start: wall time of `synthtune validate` on every example, `--help` and `schema`,
each a fresh process, side by side with `python -c "import pydantic, yaml"` (the floor: the
recipe models need pydantic and YAML whatever else happens).

Goal (issue 19): validate, --help and schema under 1.5 s on 2 cores. Before the lazy
imports validate took 12-16 s: the pipeline imported every stage, and with it torch,
transformers, peft and scikit-learn, before reading the recipe. Measured after (2 idle cores,
median of 3): validate 0.85-1.14 s on every example, --help 0.23 s, schema 0.58 s, floor 0.09 s.

    python bench/cold_start.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall(args: list[str], repeats: int) -> float:
    """Median wall seconds of ``args`` over ``repeats`` fresh processes."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(args, cwd=ROOT, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    repeats = parser.parse_args().repeats
    python = [sys.executable]
    floor = wall([*python, "-c", "import pydantic, yaml"], repeats)
    cli = [*python, "-m", "synthtune"]
    rows = [
        ("--help", wall([*cli, "--help"], repeats)),
        ("schema", wall([*cli, "schema"], repeats)),
    ]
    for recipe in sorted((ROOT / "examples").glob("*/recipe*.yaml")):
        name = f"validate {recipe.parent.name}/{recipe.name}"
        rows.append((name, wall([*cli, "validate", str(recipe)], repeats)))
    print(f"{'command':<52} {'seconds':>8} {'x floor':>8}  (floor: import pydantic, yaml)")
    print(f"{'python -c import pydantic, yaml':<52} {floor:>8.2f} {1.0:>8.1f}")
    for name, seconds in rows:
        goal = "" if seconds < 1.5 else "  over the 1.5 s goal"
        print(f"{name:<52} {seconds:>8.2f} {seconds / floor:>8.1f}{goal}")


if __name__ == "__main__":
    main()
