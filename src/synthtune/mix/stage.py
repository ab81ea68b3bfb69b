"""Mix stage: synthetic records injected into the real train split by schedule; val and test
are real only.

Real records come split by ``realdata.load_real_splits``: your own train/validation/test
files, or one file split by a hash of each id (``records.split_of``), so the split is stable
across runs and agrees with the local model's pre-training corpus, which must not see the
test split. Synthetic records go to train only: validation (early stopping) and test then
measure what matters, the fit to human-written data. Without a ``generate`` section the run
is real data only.

Injection (``mix.schedule``, docs/mixing.md): start at ``mix.ratio`` (random accepted records),
then each round add records to the real-data clusters the synthetic ones under-cover, measure
the distance to the real train split, and stop below ``mix.stop_when.wasserstein_below``, at
the ``max_ratio`` budget, when a round makes the distance worse (undone), or when no record is
left where the real data is under-covered. ``mix/rounds.json`` holds the per-round table.

Classification data (``mix.labels``, ``synthtune.label_targets``): each label gets a quota
computed from the real train split; the start fills every quota from that label's records,
off the real manifold too (closest first) when the label has too few on it, and rounds add by
quota share.
``mix.use_real_train: false`` trains on the synthetic records alone (val/test stay real).
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import numpy as np

from synthtune.config import Recipe
from synthtune.context import StageContext
from synthtune.decisions import apply_decisions
from synthtune.distribution.coverage import declared_domains
from synthtune.distribution.probe import DistributionProbe
from synthtune.errors import RecipeError, StageError
from synthtune.label_targets import (
    label_targets,
    real_label_counts,
    target_problems,
    uses_label_targets,
)
from synthtune.mix.schedule import LabelQuotas, Schedule, run_schedule
from synthtune.plugins import FEATURE_SPACES, TASKS
from synthtune.realdata import RealSplits, load_real_splits
from synthtune.records import Record, split_of, stratum_of
from synthtune.store import review_decisions


def split_real(records: list[Record], recipe: Recipe) -> dict[str, list[Record]]:
    mix = recipe.mix
    out: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for record in records:
        split = split_of(record.id, recipe.seed, mix.val_fraction, mix.test_fraction)
        record.lineage["split"] = split
        out[split].append(record)
    return out


def label_counts(splits: dict[str, list[Record]]) -> dict[str, dict[str, dict[str, int]]]:
    """split -> source -> label -> records (labelled records only)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for name, records in splits.items():
        by_source: dict[str, Counter[str]] = {}
        for record in records:
            if record.payload.label is not None:
                by_source.setdefault(record.source, Counter())[record.payload.label] += 1
        out[name] = {source: dict(sorted(c.items())) for source, c in by_source.items()}
    return out


def stratum_keys(recipe: Recipe) -> list[str]:
    """The review strata real records carry too: ``slots.<name>`` keys of
    ``quality.review.stratify_by`` whose slot ``mix.real.slots`` maps a column to."""
    real = recipe.mix.real
    if real is None or not real.slots:
        return []
    slots = {f"slots.{name}" for name in real.slot_names().values()}
    return [k for k in recipe.quality.review.stratify_by if k in slots]


def stratum_counts(
    splits: dict[str, list[Record]], keys: list[str]
) -> dict[str, dict[str, dict[str, int]]]:
    """split -> source -> stratum -> records, over ``keys`` (see ``stratum_keys``)."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for name, records in splits.items():
        by_source: dict[str, Counter[str]] = {}
        for record in records:
            by_source.setdefault(record.source, Counter())[stratum_of(record, keys)] += 1
        out[name] = {source: dict(sorted(c.items())) for source, c in by_source.items()}
    return out


def check_real_sizes(recipe: Recipe, real: RealSplits) -> list[str]:
    """An empty real test split (always needed) or validation split (needed unless
    train.eval_strategy is no), said at validate rather than at train time."""
    cfg = recipe.mix.real
    assert cfg is not None
    source = "mix.real.path" if cfg.path is not None else "mix.real.train"
    problems = []
    needed = {"test": ("test", "test_fraction")}
    if recipe.train.eval_strategy != "no":
        needed["val"] = ("validation", "val_fraction")
    for split, (field, fraction) in needed.items():
        if not real.splits[split]:
            problems.append(
                f"{source}: the hash split left the {split} split empty "
                f"({len(real.splits['train'])} train rows); give a {field} file "
                f"(mix.real.{field}) or raise mix.{fraction}"
                + (" (or set train.eval_strategy: no)" if split == "val" else "")
            )
    return problems


def check_real_labels(recipe: Recipe, real: RealSplits) -> list[str]:
    """Problems a classifier trained on real data alone would hit (one class, no labels)."""
    if not TASKS.get(recipe.train.task).labelled or recipe.generate is not None:
        return []
    assert recipe.mix.real is not None
    if recipe.mix.real.label_field is None:
        return [f"mix.real.label_field: train.task {recipe.train.task} needs a label column"]
    labels = {r.payload.label for r in real.splits["train"]}
    if len(labels) < 2:
        return [
            f"mix.real: the real train split has {len(labels)} class "
            f"({', '.join(map(str, labels)) or 'none'}); a classifier needs at least 2 "
            "(a one-class model scores 1.00 and means nothing)"
        ]
    # the classifier knows the train labels only: a validation row of another class fails
    # training, a test row of another class would be left out of every metric
    problems = []
    for split, field in (("val", "validation"), ("test", "test")):
        unknown = Counter(
            str(r.payload.label) for r in real.splits[split] if r.payload.label not in labels
        )
        if unknown:
            real_cfg = recipe.mix.real
            where = (
                field
                if getattr(real_cfg, field) is not None
                else ("path" if real_cfg.path is not None else "train")
            )
            found = ", ".join(f"{label!r} ({n} rows)" for label, n in sorted(unknown.items()))
            problems.append(
                f"mix.real.{where}: the {split} split has labels the train split lacks: "
                f"{found}; the classifier can only predict the train labels "
                f"({', '.join(sorted(map(str, labels)))})"
            )
    return problems


def distance_note(stopped: str, rounds: list[dict[str, Any]], threshold: float) -> str | None:
    """Why the distance threshold was not reached, in plain words (``None`` when it was, or
    when nothing was measured). Far above the threshold after every round means the
    synthetic records describe something else than the real rows: more of them cannot help."""
    measured = [r["wasserstein"] for r in rounds if r.get("wasserstein") is not None]
    if stopped == "threshold" or not measured:
        return None
    start, best = measured[0], min(measured)
    trend = f"from {start:.2f} to {best:.2f}" if len(measured) > 1 else f"{start:.2f}"
    text = (
        f"the distance threshold {threshold} was not reached (stopped: {stopped}); the "
        f"distance went {trend} over {len(measured)} measurement(s)"
    )
    if best > 3 * threshold:
        text += (
            f", still {best / threshold:.0f}x the threshold: the synthetic records and the "
            "real train rows describe different things (compare the sample records), so "
            "injecting more cannot close the gap; a real side that matches what is generated, "
            "or a generator prompted with real rows, can"
        )
    return text


class MixStage:
    name = "mix"
    sections: tuple[str, ...] = ("mix",)

    def check(self, recipe: Recipe) -> None:
        """Reads the real data files now, so a bad encoding, row or column, or a one-class
        label set, is reported by validate, before any work."""
        if recipe.mix.real is None:
            return
        real = load_real_splits(recipe)
        problems = check_real_sizes(recipe, real) + check_real_labels(recipe, real)
        if uses_label_targets(recipe):
            labels = list(real_label_counts(real.splits["train"]))
            problems += target_problems(recipe.mix.labels, labels)
        if problems:
            raise RecipeError(str(recipe.source), problems)

    def run(self, ctx: StageContext) -> dict[str, Any]:
        recipe = ctx.recipe
        reviewed = apply_decisions(
            ctx.store.read_table("quality", "dataset"), review_decisions(ctx.store.root)
        )
        synthetic = [r for r in reviewed if r.status == "accepted"]
        random.Random(recipe.seed).shuffle(synthetic)
        extra_summary: dict[str, Any] = {}
        if recipe.mix.real is None:
            ctx.log("[yellow]mix: no real data configured; val/test are synthetic[/]")
            splits = split_real(synthetic, recipe)
            used = len(splits["train"])
        else:
            real = load_real_splits(recipe)
            splits = real.splits
            self._log_real(ctx, real)
            chosen, extra = self._inject(ctx, splits["train"], synthetic)
            if recipe.mix.use_real_train:
                splits["train"] = splits["train"] + chosen
            else:
                ctx.log("mix: use_real_train is false: train holds the synthetic records only")
                splits["train"] = chosen
            used = len(chosen)
            extra_summary.update(extra)
            extra_summary["real"] = real.stats
        if not splits["train"] or not splits["test"]:
            raise StageError("mix: train or test split is empty; add data or change fractions")
        for name, records in splits.items():
            ctx.store.write_table(self.name, name, records)
        return {
            "records_in": len(synthetic),
            "records_out": sum(len(v) for v in splits.values()),
            "synthetic_used": used,
            "splits": {
                name: dict(Counter(r.source for r in records)) for name, records in splits.items()
            },
            "labels": label_counts(splits),
            **({"strata": stratum_counts(splits, keys)} if (keys := stratum_keys(recipe)) else {}),
            **extra_summary,
        }

    def _log_real(self, ctx: StageContext, real: RealSplits) -> None:
        stats = real.stats
        rows = stats["rows"]
        ctx.log(
            f"mix: {stats['rows_read']} real rows read ({', '.join(stats['files'])}): "
            f"train {rows['train']}, val {rows['val']}, test {rows['test']}"
        )
        if stats["duplicates"]:
            what = "dropped" if stats["duplicates_policy"] == "drop" else "kept (duplicates: keep)"
            ctx.log(f"[yellow]mix: {stats['duplicates']} duplicate real rows, {what}[/]")
        leaks = {k: v for k, v in stats["overlap"].items() if v}
        if leaks:
            ctx.log(
                "[yellow]mix: the same rows appear in two splits "
                f"({', '.join(f'{k} {v}' for k, v in leaks.items())}); "
                "mix.real.duplicates: drop removes test rows from train/validation[/]"
            )

    def _inject(
        self, ctx: StageContext, real_train: list[Record], pool: list[Record]
    ) -> tuple[list[Record], dict[str, Any]]:
        """Run the schedule over the shuffled pool; return the chosen records and the table."""
        recipe, mix = ctx.recipe, ctx.recipe.mix
        if recipe.generate is None:
            return [], {"stopped": "real data only", "rounds": []}
        if not pool:
            ctx.log("[yellow]mix: no accepted synthetic records to inject[/]")
            return [], {"stopped": "no synthetic records", "rounds": []}
        space = FEATURE_SPACES.get(mix.features.space)
        if getattr(space, "needs_model_path", False):  # e.g. local-tiny-clip is built first
            features = mix.features.model_copy(
                update={"model": ctx.resolve_model(mix.features.model)}
            )
            mix = mix.model_copy(update={"features": features})
        probe = DistributionProbe(
            real_train, mix, recipe.seed, declared_domains(recipe), media_root=ctx.store.root
        )
        quotas, targets = self._quotas(ctx, real_train, pool, probe)
        with ctx.progress("mix: rounds", mix.schedule.max_rounds + 1) as advance:

            def measure(indices: np.ndarray) -> dict[str, Any]:
                advance(1)
                return probe.measure([pool[i] for i in indices])

            schedule: Schedule = run_schedule(
                probe.cluster_of(pool),
                probe.reference_share,
                real_train=len(real_train),
                start_ratio=mix.synthetic_per_real(),
                max_ratio=mix.max_synthetic_per_real(),
                per_round=mix.schedule.per_round,
                max_rounds=mix.schedule.max_rounds,
                threshold=mix.stop_when.wasserstein_below,
                measure=measure,
                seed=recipe.seed,
                quotas=quotas,
            )
        want = round(len(real_train) * mix.synthetic_per_real())
        if schedule.rounds[0].synthetic < want:
            ctx.log(
                f"[yellow]mix: the ratio {mix.ratio} asks for {want} synthetic records; "
                f"{schedule.rounds[0].synthetic} of the {len(pool)} accepted lie on the real "
                "data's manifold[/]"
            )
        chosen = [pool[i] for i in schedule.chosen]
        for i in schedule.chosen:
            pool[i].lineage["mix_round"] = schedule.chosen_round[int(i)]
        start = [pool[i] for i, r in schedule.chosen_round.items() if r == 0]
        rounds = [r.as_dict() for r in schedule.rounds]
        ctx.store.write_json(self.name, "rounds.json", rounds)
        last = schedule.rounds[-1 if schedule.rounds[-1].kept else -2].measures
        ctx.log(
            f"mix: {len(chosen)} synthetic records after {len(rounds) - 1} rounds, stopped: "
            f"{schedule.stopped}, distance {last.get('wasserstein')}"
        )
        labels = {} if targets is None else self._per_label(ctx, probe, chosen, targets, schedule)
        note = distance_note(schedule.stopped, rounds, mix.stop_when.wasserstein_below)
        if note:
            ctx.log(f"[yellow]mix: {note}[/]")
        return chosen, {
            "stopped": schedule.stopped,
            "threshold": mix.stop_when.wasserstein_below,
            "rounds": rounds,
            "distance": last.get("wasserstein"),
            "distance_note": note,
            "coverage": {"start": probe.coverage(start), "final": probe.coverage(chosen)},
            **labels,
        }

    def _quotas(
        self,
        ctx: StageContext,
        real_train: list[Record],
        pool: list[Record],
        probe: DistributionProbe,
    ) -> tuple[LabelQuotas | None, dict[str, dict[str, int]] | None]:
        """Per-label quotas of the pool (None for unlabelled recipes) and, per real label,
        its real rows and synthetic target."""
        recipe, cfg = ctx.recipe, ctx.recipe.mix.labels
        if not uses_label_targets(recipe):
            return None, None
        real = real_label_counts(real_train)
        problems = target_problems(cfg, list(real))
        if problems:
            raise RecipeError(str(recipe.source), problems)
        wanted = label_targets(real, recipe.mix.synthetic_per_real(), cfg)
        index = {label: i for i, label in enumerate(real)}
        labels = np.array([index.get(str(r.payload.label), -1) for r in pool], dtype=np.int64)
        strays = int((labels == -1).sum())
        if strays:
            ctx.log(
                f"[yellow]mix: {strays} accepted synthetic records carry a label the real "
                "train split lacks (or none); left out[/]"
            )
        ctx.log(f"mix: synthetic target per label ({cfg.target}): {wanted}")
        quotas = LabelQuotas(
            labels=labels,
            quota=np.array([wanted[k] for k in real], dtype=np.int64),
            closeness=probe.label_closeness(pool),
            fill=np.array([k not in cfg.allow_zero for k in real], dtype=bool),
        )
        return quotas, {k: {"real": n, "target": wanted[k]} for k, n in real.items()}

    def _per_label(
        self,
        ctx: StageContext,
        probe: DistributionProbe,
        chosen: list[Record],
        targets: dict[str, dict[str, int]],
        schedule: Schedule,
    ) -> dict[str, Any]:
        """``per_label`` (real, synthetic, target, distance) and the labels left without
        synthetic records; logs off-manifold fills and empty labels."""
        by_label: dict[str, list[Record]] = {k: [] for k in targets}
        for record in chosen:
            by_label[str(record.payload.label)].append(record)
        filled = schedule.filled if schedule.filled is not None else np.zeros(len(targets))
        for label, count in zip(targets, filled, strict=True):
            if count:
                ctx.log(
                    f"[yellow]mix: label {label!r}: {int(count)} of its synthetic records lie "
                    "off the real manifold, taken closest to its real rows first[/]"
                )
        allowed = set(ctx.recipe.mix.labels.allow_zero)
        empty = [
            k for k, t in targets.items() if t["target"] and not by_label[k] and k not in allowed
        ]
        if empty:
            ctx.log(
                f"[yellow]mix: no accepted synthetic record has the labels {', '.join(empty)}; "
                "generate some (or list them in mix.labels.allow_zero)[/]"
            )
        per_label = {
            k: {
                "real": t["real"],
                "synthetic": len(by_label[k]),
                "target": t["target"],
                "off_manifold": int(f),
                "distance": probe.label_distance(by_label[k], k),
            }
            for (k, t), f in zip(targets.items(), filled, strict=True)
        }
        return {"per_label": per_label, "labels_without_synthetic": empty}
