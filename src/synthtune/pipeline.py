"""The runner: sequences the stages, skipping the complete ones. Nothing else.

A stage is complete when its manifest exists and its fingerprint matches. The fingerprint
chains the recipe sections the stage reads, the content of its input files, and the previous
stage's fingerprint, so editing ``train`` re-runs train and what follows, never generate.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from synthtune import distributed
from synthtune.config import Recipe
from synthtune.config.base import fingerprint_dump
from synthtune.context import Stage, StageContext
from synthtune.errors import BackendError, RecipeError, RegistryError, StageError
from synthtune.evaluate.stage import EvaluateStage
from synthtune.executor import Executor
from synthtune.export.stage import ExportStage
from synthtune.generate.stage import GenerateStage
from synthtune.label_targets import label_weights_fingerprint
from synthtune.mix.stage import MixStage
from synthtune.model_names import recipe_model_problems
from synthtune.quality.stage import QualityStage
from synthtune.records import Record, content_hash
from synthtune.registry import Registry
from synthtune.rules import rules_path
from synthtune.store import RunStore, review_decisions
from synthtune.train.stage import TrainStage

STAGE_REGISTRY: Registry[Stage] = Registry("stage")
_BUILT_IN: tuple[Stage, ...] = (
    GenerateStage(),
    QualityStage(),
    MixStage(),
    TrainStage(),
    ExportStage(),
    EvaluateStage(),
)
for _stage in _BUILT_IN:
    STAGE_REGISTRY.register(_stage.name, _stage)
# export before evaluate: evaluation compares base / tuned / quantized (export's int8 model)
ORDER: tuple[str, ...] = ("generate", "quality", "mix", "train", "export", "evaluate")


@dataclass
class StageOutcome:
    name: str
    status: str  # "ran" | "skipped" | "reused" (from a sibling run, ``share_with``)
    seconds: float
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    run_dir: Path
    outcomes: list[StageOutcome]
    report: Path | None = None


def _file_digest(path: Path | None) -> str | None:
    """Content hash of a file, or of a folder's files (relative names and bytes, in sorted
    order, hidden files such as caches left out); ``None`` when absent."""
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    if not path.is_dir():
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    digest = hashlib.sha256()
    for file in sorted(path.rglob("*")):
        relative = file.relative_to(path)
        if file.is_file() and not any(part.startswith(".") for part in relative.parts):
            digest.update(relative.as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]


def _inputs(recipe: Recipe) -> dict[str, str | None]:
    """Content hashes of the files the recipe points at (so an edited file re-runs stages)."""
    real = recipe.mix.real
    return {
        "rules": content_hash(
            [_file_digest(rules_path(source)) for source in recipe.quality.rules]
        ),
        # with the mapping: format, split and columns change the real texts all stages read
        "real": None
        if real is None
        else content_hash(
            [
                {field: _file_digest(path) for field, path in real.files().items()},
                real.model_dump(exclude={"path", "train", "validation", "test"}),
            ]
        ),
    }


def fingerprints(
    recipe: Recipe, runs_root: Path | str = "runs", *, run_dir: Path | None = None
) -> dict[str, str]:
    """Each stage's fingerprint; ``run_dir`` (default ``runs_root/<name>``) holds the review
    decisions mix reads. Neither the name nor the folder enter a fingerprint."""
    run_dir = Path(runs_root) / recipe.name if run_dir is None else Path(run_dir)
    dump = fingerprint_dump(recipe)
    files = _inputs(recipe)
    # The local model (used by quality, train, evaluate) depends on these too.
    shared = {
        "local_tiny": dump["local_tiny"],
        "seed": dump["seed"],
        "real": files["real"],
        "splits": [dump["mix"]["val_fraction"], dump["mix"]["test_fraction"]],
    }
    # Review decisions change what mix uses, so they are part of mix's fingerprint.
    reviews = content_hash(
        {k: d.model_dump(exclude={"decided_at"}) for k, d in review_decisions(run_dir).items()}
    )
    generate_extra: dict[str, Any] = {}
    if recipe.generate is not None and recipe.generate.edge_cases:
        # edge cases take their thresholds from the rules: an edited rule re-plans generation
        generate_extra["rules"] = files["rules"]
    labels = label_weights_fingerprint(recipe)  # label-slot shares from the real train split
    if labels:
        generate_extra["labels"] = labels
    extra = {
        "generate": generate_extra or None,
        "quality": {"rules": files["rules"], **shared},
        "mix": {"real": files["real"], "reviews": reviews},
        "train": shared,
        "evaluate": shared,
    }
    out: dict[str, str] = {}
    previous = ""
    for name in ORDER:
        stage = STAGE_REGISTRY.get(name)
        sections = {s: dump[s] for s in stage.sections}
        previous = content_hash({"prev": previous, "sections": sections, "extra": extra.get(name)})
        out[name] = previous
    return out


def check_recipe(recipe: Recipe) -> None:
    """Every deep check of every stage, before any work or any folder is created."""
    problems: list[str] = recipe_model_problems(recipe)  # every model loads offline
    for name in ORDER:
        try:
            STAGE_REGISTRY.get(name).check(recipe)
        except RecipeError as exc:
            problems.extend(
                f"{exc.path}: {p}" if exc.path != str(recipe.source) else p for p in exc.problems
            )
        except (StageError, RegistryError, BackendError) as exc:
            problems.append(str(exc))
    if problems:
        raise RecipeError(str(recipe.source), problems)


def _run_stage(ctx: StageContext, stage: Stage, fingerprint: str, main: bool) -> StageOutcome:
    """Run one stage: on every process if it is distributed (train), else on the main one."""
    store = ctx.store
    if main and store.stage_state(stage.name) is not None:  # complete for another recipe
        store.invalidate(stage.name)
    if not main and not getattr(stage, "distributed", False):
        return StageOutcome(stage.name, "ran elsewhere", 0.0, {})
    ctx.log(f"[bold cyan]{stage.name}[/]: running")
    started = time.perf_counter()
    summary = stage.run(ctx)
    seconds = time.perf_counter() - started
    if main:
        store.mark_complete(stage.name, fingerprint, summary, seconds=seconds)
    return StageOutcome(stage.name, "ran", seconds, summary)


def _reuse(
    ctx: StageContext, name: str, fingerprint: str, share_with: list[Path], main: bool
) -> StageOutcome | None:
    """Take ``name`` over from the first sibling run that has it complete with the same
    fingerprint (fingerprints hold no run name or folder, so equal means same inputs).
    Every process decides alike (read-only checks); the main one copies."""
    store = ctx.store
    for sibling in share_with:
        other = RunStore(sibling)
        if other.root.resolve() != store.root.resolve() and other.is_complete(name, fingerprint):
            started = time.perf_counter()
            entry = store.reuse_stage(name, other) if main else other.stage_state(name) or {}
            ctx.log(f"[dim]{name}: reused from {other.root}[/]")
            seconds = time.perf_counter() - started
            return StageOutcome(name, "reused", seconds, entry.get("summary", {}))
    return None


def ensure_stage(ctx: StageContext, stage: Stage, inputs: Any) -> dict[str, Any]:
    """Run ``stage`` in ``ctx``'s run folder unless it is complete for these ``inputs``
    (its fingerprint is their content hash); returns the stage's summary. The skip/resume
    rule for stages run outside a recipe's sequence: each round and arm of ``evolve``."""
    fingerprint = content_hash(inputs)
    if ctx.store.is_complete(stage.name, fingerprint):
        return dict((ctx.store.stage_state(stage.name) or {}).get("summary", {}))
    return _run_stage(ctx, stage, fingerprint, main=True).summary


def publish_results(
    recipe: Recipe,
    runs_root: Path | str,
    results: dict[str, tuple[list[Record], dict[str, Any]]],
) -> None:
    """Make records produced outside the sequence (evolve's rounds) the run's complete
    ``stage -> (dataset, summary)`` results, under the recipe's own fingerprints, after
    forgetting every stage (their inputs changed): ``synthtune run`` then continues after
    the last published stage."""
    store = RunStore(Path(runs_root) / recipe.name)
    prints = fingerprints(recipe, runs_root)
    for name in ORDER:
        store.invalidate(name)
    for name, (records, summary) in results.items():
        store.write_table(name, "dataset", records)
        store.mark_complete(name, prints[name], summary)


def run_recipe(
    recipe: Recipe,
    runs_root: Path | str = "runs",
    *,
    from_stage: str | None = None,
    force: bool = False,
    until: str | None = None,
    quiet: bool = False,
    no_cache: bool = False,
    console: Console | None = None,
    run_dir: Path | None = None,
    share_with: list[Path] | None = None,
    executor: Executor | None = None,
) -> RunResult:
    """Run the stages in order into ``runs_root/<name>``, skipping complete ones.

    ``from_stage`` re-runs that stage and every later one; ``force`` re-runs all;
    ``until`` stops after the named stage; ``no_cache`` bypasses the response cache.
    ``run_dir`` puts the run elsewhere than ``runs_root/<name>``; ``share_with`` names
    sibling run directories whose complete stages of the same fingerprint are linked in
    instead of recomputed (``synthtune ablate``: one generation feeds every variant).
    ``executor`` runs the stages' data-parallel parts (default: this process); the
    results, and so the fingerprints, do not depend on it.
    """
    for name in (from_stage, until):
        if name is not None and name not in ORDER:
            raise StageError(f"unknown stage {name!r}; stages: {', '.join(ORDER)}")
    check_recipe(recipe)
    store = RunStore(run_dir if run_dir is not None else Path(runs_root) / recipe.name)
    prints = fingerprints(recipe, runs_root, run_dir=store.root)
    main = distributed.is_main()
    if main:
        store.write_lock(recipe.model_dump(mode="json"), prints[ORDER[-1]])
    ctx = StageContext(recipe=recipe, store=store, quiet=quiet or not main, no_cache=no_cache)
    if console is not None:
        ctx.console = console
    if executor is not None:
        ctx.executor = executor
        ctx.log(f"executor: {executor.name} ({executor.workers} workers)")
    redo = ORDER.index(from_stage) if from_stage else (0 if force else len(ORDER))
    if main:
        # every stage from `from_stage` on, even past `until`: they read what is redone
        for name in ORDER[redo:]:
            store.invalidate(name)
    outcomes = []
    for name in ORDER:
        stage = STAGE_REGISTRY.get(name)
        distributed.barrier()  # every process sees the same state before deciding
        damaged = store.damaged_outputs(name) if store.stage_state(name) else []
        if damaged:
            ctx.log(
                f"[yellow]{name}: {', '.join(damaged)} changed or damaged since the stage "
                "completed: running it again[/]"
            )
        # the outputs were hashed just above: not again
        if not damaged and store.is_complete(name, prints[name], verify_outputs=False):
            done = store.stage_state(name) or {}
            outcomes.append(StageOutcome(name, "skipped", 0.0, done.get("summary", {})))
            ctx.log(f"[dim]{name}: complete, skipped[/]")
        else:
            reused = _reuse(ctx, name, prints[name], share_with or [], main)
            outcomes.append(reused or _run_stage(ctx, stage, prints[name], main))
        distributed.barrier()
        if name == until:
            break
    return RunResult(run_dir=store.root, outcomes=outcomes)
