"""``synthtune ablate``: every declared variant of a recipe times every training seed, each a
run of its own under ``<runs>/<name>/ablate/<variant>--s<seed>/``, then statistics.

Runs share what they have in common through the run store (``run_recipe(share_with=...)``):
a stage complete in a sibling run with the same fingerprint is linked in, not recomputed, so
one generation feeds every variant that keeps the generate section, and the seeds of one
variant share everything before train. The order is seed by seed (every variant at seed 0
first): all upstream stages are computed once whatever the order, and an interrupted ablation
already holds a comparable first seed. A complete run is skipped on the next call (resume).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synthtune.ablate.contamination import overlap
from synthtune.ablate.stats import DEFAULT_METRICS, METRICS, analyse
from synthtune.ablate.variants import variant_recipes, with_train_seed
from synthtune.config import Recipe
from synthtune.errors import RecipeError
from synthtune.store import RunStore

# metric -> the evaluate suite that measures it
METRIC_SUITE = {
    "macro_f1": "classification",
    "accuracy": "classification",
    "perplexity": "perplexity",
}
MODEL_COLUMNS = ("tuned", "base", "baseline")


@dataclass(frozen=True)
class PlannedRun:
    variant: str
    seed: int
    recipe: Recipe
    run_dir: Path


@dataclass
class AblationResult:
    folder: Path
    runs: list[dict[str, Any]]
    stats: dict[str, Any]
    contamination: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)


def ablation_dir(recipe: Recipe, runs_root: Path | str) -> Path:
    return Path(runs_root) / recipe.name / "ablate"


def chosen_metrics(recipe: Recipe) -> list[str]:
    """The ablate section's metrics, or the task's defaults; each one checked against the task."""
    assert recipe.ablate is not None
    task = recipe.train.task
    where = str(recipe.source or "the recipe")
    if recipe.ablate.metrics is None:
        if task not in DEFAULT_METRICS:
            raise RecipeError(where, [f"ablate: train.task {task} is not supported yet"])
        return DEFAULT_METRICS[task]
    problems = []
    for metric in recipe.ablate.metrics:
        if metric not in METRICS:
            problems.append(f"ablate.metrics: unknown {metric!r} (known: {', '.join(METRICS)})")
        elif metric not in DEFAULT_METRICS.get(task, []):
            problems.append(f"ablate.metrics: {metric} is not measured for train.task {task}")
    if problems:
        raise RecipeError(where, problems)
    return recipe.ablate.metrics


def plan(
    recipe: Recipe,
    runs_root: Path | str = "runs",
    *,
    seeds: int | None = None,
    variants: list[str] | None = None,
) -> list[PlannedRun]:
    """Every (variant, seed) run in execution order, each recipe validated before any work:
    a bad patch raises :class:`RecipeError` naming ``ablate.variants.<name>.<field>``."""
    if recipe.ablate is None:
        raise RecipeError(
            str(recipe.source or "the recipe"),
            ["ablate: the recipe has no ablate section (docs/ablations.md)"],
        )
    chosen_metrics(recipe)
    recipes = variant_recipes(recipe, variants)
    seed_list = list(range(seeds)) if seeds is not None else recipe.ablate.seed_list()
    folder = ablation_dir(recipe, runs_root)
    return [
        PlannedRun(name, seed, with_train_seed(variant, seed), folder / f"{name}--s{seed}")
        for seed in seed_list
        for name, variant in recipes.items()
    ]


def _share_models(run: PlannedRun, siblings: list[PlannedRun]) -> None:
    """Copy the sibling's locally built models (local-tiny) before the run: the model
    resolver keeps a copy whose fingerprint matches and rebuilds otherwise. Copies, not
    links: a rebuild writes into the folder."""
    target = run.run_dir / "models"
    ordered = sorted(siblings, key=lambda s: s.variant != run.variant)  # same variant first
    for sibling in ordered:
        for built in sorted((sibling.run_dir / "models").glob("*/synthtune.json")):
            destination = target / built.parent.name
            if not destination.exists():
                tmp = target / f".{built.parent.name}.copy"
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(built.parent, tmp)
                tmp.replace(destination)


def _model_scores(suites: dict[str, Any], metrics: list[str]) -> dict[str, dict[str, float]]:
    """``{tuned|base|baseline: {metric: value}}`` from evaluate/metrics.json's suites."""
    out: dict[str, dict[str, float]] = {}
    for metric in metrics:
        suite = suites.get(METRIC_SUITE[metric], {})
        for column in MODEL_COLUMNS:
            value = suite.get(column)
            if isinstance(value, dict):
                value = value.get(metric)
            if isinstance(value, int | float):
                out.setdefault(column, {})[metric] = float(value)
    return out


def collect(run: PlannedRun, statuses: dict[str, str], metrics: list[str]) -> dict[str, Any]:
    """One run's row of results.json: its stages' statuses and its evaluate metrics."""
    evaluation = json.loads((run.run_dir / "evaluate" / "metrics.json").read_text("utf-8"))
    suites = evaluation.get("suites", {})
    tuned = suites.get("classification", {}).get("tuned", {})
    return {
        "variant": run.variant,
        "seed": run.seed,
        "run_dir": str(run.run_dir),
        "stages": statuses,
        "metrics": _model_scores(suites, metrics),
        "per_class_f1": {label: row["f1"] for label, row in tuned.get("per_class", {}).items()},
        "n_test": evaluation.get("n_test"),
    }


def contamination(runs: list[PlannedRun]) -> dict[str, Any]:
    """Per variant: overlap of its synthetic training records with its test split (the mix
    of every seed of a variant is the same stage, so the first seed's is read)."""
    out: dict[str, Any] = {}
    for run in runs:
        if run.variant in out:
            continue
        store = RunStore(run.run_dir)
        synthetic = [r for r in store.read_table("mix", "train") if r.source == "synthetic"]
        out[run.variant] = overlap(synthetic, store.read_table("mix", "test"))
    return out


def _line(index: int, total: int, run: PlannedRun) -> str:
    return f"[{index}/{total}] {run.variant} seed {run.seed} ..."


def _outcome_note(statuses: dict[str, str], seconds: float) -> str:
    ran = [s for s, status in statuses.items() if status == "ran"]
    reused = [s for s, status in statuses.items() if status == "reused"]
    if not ran and not reused:
        return " complete, skipped"
    parts = [
        f"ran {', '.join(ran)}" if ran else "",
        f"reused {', '.join(reused)}" if reused else "",
    ]
    return f" {seconds:.1f} s ({'; '.join(p for p in parts if p)})"


def run_ablation(
    recipe: Recipe,
    runs_root: Path | str = "runs",
    *,
    seeds: int | None = None,
    variants: list[str] | None = None,
    echo: Callable[..., None] | None = None,
    stage_logs: bool = False,
) -> AblationResult:
    """Plan, run (sharing stages, skipping complete runs), analyse and write the results.

    ``echo(text, end=...)`` receives one progress line per run (a console's ``print``);
    ``stage_logs`` also shows each run's own stage progress (training steps ...) under it."""
    from synthtune.ablate.report import write_outputs
    from synthtune.pipeline import run_recipe

    planned = plan(recipe, runs_root, seeds=seeds, variants=variants)
    metrics = chosen_metrics(recipe)
    assert recipe.ablate is not None
    names = list(dict.fromkeys(run.variant for run in planned))
    reference = recipe.ablate.reference_name()
    reference = reference if reference in names else names[0]
    rows = []
    for index, run in enumerate(planned, start=1):
        if echo is not None:
            echo(_line(index, len(planned), run), end="\n" if stage_logs else "")
        siblings = [other for other in planned if other is not run]
        _share_models(run, siblings)
        started = time.perf_counter()
        try:
            result = run_recipe(
                run.recipe,
                runs_root,
                run_dir=run.run_dir,
                share_with=[s.run_dir for s in siblings],
                quiet=not stage_logs,
            )
        except BaseException:
            if echo is not None:
                echo("")  # end the progress line before the error is shown
            raise
        statuses = {o.name: o.status for o in result.outcomes}
        if echo is not None:
            note = _outcome_note(statuses, time.perf_counter() - started)
            echo(f"{_line(index, len(planned), run)}{note}" if stage_logs else note)
        rows.append(collect(run, statuses, metrics))
    stats = analyse(rows, names, reference, metrics)
    guard = contamination(planned)
    folder = ablation_dir(recipe, runs_root)
    outcome = AblationResult(folder=folder, runs=rows, stats=stats, contamination=guard)
    patches = recipe.ablate.patches()
    outcome.files = write_outputs(outcome, {n: patches[n] for n in names}, recipe.name)
    return outcome
