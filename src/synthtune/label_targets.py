"""Synthetic records wanted per class label, from the real train split (``mix.labels``).

Shared by the generate stage (which weights a template's label slot by these targets, so
``generate.n`` is spent like them) and the mix stage (which enforces them as per-label
quotas). Only the real **train** split is ever read: generation must not see validation or
test rows. Pure functions except ``generation_targets``, which reads the real data files.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from synthtune.config import ChoiceSlot, LabelTargetsConfig, Recipe, TemplateConfig
from synthtune.errors import RecipeError
from synthtune.realdata import load_real_splits
from synthtune.records import Record

_PLAIN_SLOT = re.compile(r"^\s*\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}\s*$")


def uses_label_targets(recipe: Recipe) -> bool:
    """A labelled task (classification, clip) with labelled real data and a generate
    section: the only case where targets apply (unlabelled and causal-LM recipes keep the
    label-blind behaviour)."""
    from synthtune.plugins import TASKS

    real = recipe.mix.real
    return (
        recipe.generate is not None
        and TASKS.get(recipe.train.task).labelled
        and real is not None
        and real.label_field is not None
    )


def real_label_counts(records: list[Record]) -> dict[str, int]:
    """Label -> rows of the labelled records, sorted by label."""
    found = Counter(str(r.payload.label) for r in records if r.payload.label is not None)
    return dict(sorted(found.items()))


def target_problems(cfg: LabelTargetsConfig, labels: list[str]) -> list[str]:
    """Labels named in ``mix.labels`` that the real train split lacks (typos, stale names)."""
    problems = []
    known = ", ".join(labels) or "none"
    named = {"target": list(cfg.target) if isinstance(cfg.target, dict) else []}
    named["allow_zero"] = cfg.allow_zero
    for where, names in named.items():
        unknown = sorted(set(names) - set(labels))
        if unknown:
            problems.append(
                f"mix.labels.{where}: labels {', '.join(map(repr, unknown))} are not in the "
                f"real train split (its labels: {known})"
            )
    return problems


def largest_remainder(weights: dict[str, float], total: int) -> dict[str, int]:
    """``total`` split in proportion to ``weights``, the rounding left-overs to the largest
    remainders (ties by label), so the parts sum to ``total`` exactly."""
    mass = sum(weights.values())
    if mass <= 0 or total <= 0:
        return dict.fromkeys(weights, 0)
    exact = {k: total * w / mass for k, w in weights.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    order = sorted(exact, key=lambda k: (out[k] - exact[k], k))
    for k in order[: total - sum(out.values())]:
        out[k] += 1
    return out


def water_fill(real: dict[str, int], floor: dict[str, int], total: int) -> dict[str, int]:
    """Synthetic per label: ``floor`` each, then one at a time to the label with the fewest
    real + synthetic rows (ties by label) until ``total`` is spent."""
    out = dict(floor)
    heap = [(real[k] + out[k], k) for k in real]
    heapq.heapify(heap)
    for _ in range(max(total - sum(out.values()), 0)):
        level, label = heapq.heappop(heap)
        out[label] += 1
        heapq.heappush(heap, (level + 1, label))
    return out


def label_targets(real: dict[str, int], ratio: float, cfg: LabelTargetsConfig) -> dict[str, int]:
    """Synthetic records wanted per real train label at ``ratio`` synthetic per real row.

    The budget is ``round(real rows x ratio)``, as without labels. ``as-real`` with
    ``ratio_per_label`` gives each label ``round(its rows x ratio)``; otherwise the budget is
    split by the real shares, ``balanced`` water-fills it, explicit shares split it by share.
    Every label outside ``allow_zero`` then gets at least ``min_per_label`` (when anything
    is asked for at all), which may add a few records beyond the budget.
    """
    budget = round(sum(real.values()) * ratio)
    least = {k: 0 if k in cfg.allow_zero or budget == 0 else cfg.min_per_label for k in real}
    if cfg.target == "balanced":
        return water_fill(real, least, budget)
    if isinstance(cfg.target, dict):
        shares = cfg.target
        base = largest_remainder({k: shares.get(k, 0.0) for k in real}, budget)
    elif cfg.ratio_per_label:
        base = {k: math.floor(n * ratio + 0.5) for k, n in real.items()}
    else:
        base = largest_remainder({k: float(n) for k, n in real.items()}, budget)
    return {k: max(base[k], least[k]) for k in real}


def plain_label_slot(template: TemplateConfig) -> str | None:
    """The slot a template's label is, when the label is ``{{ slot }}`` over a list
    ``choice`` slot (the case generation can steer); None otherwise."""
    found = _PLAIN_SLOT.match(template.label or "")
    if found is None:
        return None
    spec = template.slots.get(found.group(1))
    if isinstance(spec, ChoiceSlot) and isinstance(spec.choice, list):
        return found.group(1)
    return None


@dataclass
class GenerationTargets:
    """What targeting did to a recipe's templates, for the log and the generate summary."""

    recipe: Recipe
    targets: dict[str, int] = field(default_factory=dict)
    slots: dict[str, str] = field(default_factory=dict)  # template id -> weighted slot
    notes: list[str] = field(default_factory=list)  # log lines (warnings start with "!")

    def summary(self) -> dict[str, Any]:
        return {"label_targets": self.targets, "label_slots": self.slots} if self.slots else {}


def weight_label_slots(recipe: Recipe, targets: dict[str, int]) -> GenerationTargets:
    """A copy of ``recipe`` whose plain label slots are weighted by ``targets`` (choice
    values that are no real label get weight 0); templates with another label are kept."""
    out = GenerationTargets(recipe, targets)
    templates, producible, opaque = [], set(), False
    for template in recipe.generation.templates:
        slot = plain_label_slot(template)
        if slot is None:
            opaque = opaque or template.label is not None
            if template.label is not None:
                out.notes.append(
                    f"generate: template {template.id!r}: the label is not a plain "
                    "{{ slot }} over a choice slot; its label weights are left alone"
                )
            templates.append(template)
            continue
        spec = template.slots[slot]
        assert isinstance(spec, ChoiceSlot) and isinstance(spec.choice, list)  # plain_label_slot
        weights = [float(targets.get(str(v), 0)) for v in spec.choice]
        producible |= {str(v) for v in spec.choice}
        if sum(weights) <= 0:
            out.notes.append(
                f"!generate: template {template.id!r}: no value of slot {slot!r} is a real "
                "train label; weights left alone"
            )
            templates.append(template)
            continue
        unused = [str(v) for v, w in zip(spec.choice, weights, strict=True) if w == 0]
        if unused:
            out.notes.append(
                f"generate: template {template.id!r}: {', '.join(unused)} get weight 0 "
                "(not a real train label, or a target of 0)"
            )
        # shares, not counts: a ratio that scales every target alike draws the same records,
        # so ablation variants that differ in mix.ratio share one generation
        total = sum(weights)
        shares = [round(w / total, 9) for w in weights]
        new_slot = spec.model_copy(update={"weights": shares})
        slots = {**template.slots, slot: new_slot}
        templates.append(template.model_copy(update={"slots": slots}))
        out.slots[template.id] = slot
    missing = sorted(k for k, n in targets.items() if n > 0 and k not in producible)
    if missing and not opaque:
        out.notes.append(
            f"!generate: no template can produce the real train labels {', '.join(missing)}; "
            "add them to a template's label slot"
        )
    generate = recipe.generation.model_copy(update={"templates": templates})
    out.recipe = recipe.model_copy(update={"generate": generate})
    return out


def generation_targets(recipe: Recipe) -> GenerationTargets:
    """Targets from the real **train** split (never validation/test), applied to the label
    slots; the recipe unchanged when targets do not apply."""
    if not uses_label_targets(recipe):
        return GenerationTargets(recipe)
    real = real_label_counts(load_real_splits(recipe).splits["train"])
    problems = target_problems(recipe.mix.labels, list(real))
    if problems:
        raise RecipeError(str(recipe.source), problems)
    targets = label_targets(real, recipe.mix.synthetic_per_real(), recipe.mix.labels)
    return weight_label_slots(recipe, targets)


def label_weights_fingerprint(recipe: Recipe) -> dict[str, Any]:
    """What targeting changes in generation (the label-slot shares per template), for the
    generate stage's fingerprint; empty when targets do not apply."""
    if not uses_label_targets(recipe):
        return {}
    weighted = generation_targets(recipe)
    out: dict[str, Any] = {}
    for template in weighted.recipe.generation.templates:
        slot = weighted.slots.get(template.id)
        if slot is not None:
            spec = template.slots[slot]
            assert isinstance(spec, ChoiceSlot)
            out[template.id] = [slot, spec.weights]
    return out
