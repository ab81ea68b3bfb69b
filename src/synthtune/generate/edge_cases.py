"""Edge cases aimed at the rules: boundary values around the rules' thresholds and explicit
adversarial variants, for a configurable share of the planned items (``generate.edge_cases``).

Thresholds come from the rules themselves: each ``when``/``check`` expression is parsed with
Python's ``ast`` (the syntax simpleeval evaluates) into comparisons ``var <op> number``, and a
rule variable maps to the template slot of the same name (or through ``slot_for``). A boundary
item's slot is set just below, at, or just above the threshold on the slot's own grid (integers
for ``randint``, the rounding unit for ``uniform``) and inside its declared range, so the
record exercises exactly the comparison the rule makes (``temp < 38.5``: 38.4, 38.5, 38.6).

Determinism: whether item ``i`` is an edge case, and which, depends only on ``(seed, i)`` and
the config, like every other planning decision, so resume and re-runs see the same items.
Every edge record carries ``lineage.edge_case = {kind, slot, threshold, rule, ...}``; the
train stage can restrict adversarial training to them (``train.adversarial.on``).
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from typing import Any

from synthtune.config import EdgeCasesConfig, RandIntSlot, Recipe, UniformSlot
from synthtune.errors import RecipeError
from synthtune.rules import Rule, load_rule_sources
from synthtune.templates import CompiledTemplate, request_rng

_OPS: dict[type[ast.cmpop], str] = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}
_MIRRORED = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
# An unrounded uniform slot has no grid of its own: one step is this share of its range.
_UNROUNDED_STEP = 0.01


@dataclass(frozen=True)
class Comparison:
    """``variable <op> threshold`` as it appears in a rule expression (normalised so the
    variable is on the left: ``38.5 > temp`` reads ``temp < 38.5``)."""

    variable: str
    op: str
    threshold: int | float


@dataclass(frozen=True)
class Boundary:
    slot: str
    threshold: int | float
    rule: str | None  # None for an explicit `boundaries` entry


@dataclass(frozen=True)
class EdgeCase:
    """Slot overrides for one item and the tag its records carry in ``lineage.edge_case``."""

    overrides: dict[str, Any]
    tag: dict[str, Any]


def _number(node: ast.expr) -> int | float | None:
    value = node.value if isinstance(node, ast.Constant) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        inner = _number(node.operand)
        if inner is not None:
            return -inner if isinstance(node.op, ast.USub) else inner
    return None


def comparisons(expression: str) -> list[Comparison]:
    """Every comparison of a name with a number in ``expression``, chains split
    (``18 <= age < 65`` gives two); comparisons of two names, or with strings, are skipped."""
    found: list[Comparison] = []
    for node in ast.walk(ast.parse(expression, mode="eval")):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for left, op, right in zip(operands, node.ops, operands[1:], strict=False):
            symbol = _OPS.get(type(op))
            if symbol is None:
                continue
            if isinstance(left, ast.Name) and (number := _number(right)) is not None:
                found.append(Comparison(left.id, symbol, number))
            elif isinstance(right, ast.Name) and (number := _number(left)) is not None:
                found.append(Comparison(right.id, _MIRRORED[symbol], number))
    return found


def rule_boundaries(rules: list[Rule], slot_for: dict[str, str]) -> list[Boundary]:
    """Thresholds of the rules' ``when`` and ``check`` comparisons, as slot boundaries."""
    out: list[Boundary] = []
    for rule in rules:
        for expression in (rule.when, rule.check):
            for c in comparisons(expression) if expression else []:
                out.append(Boundary(slot_for.get(c.variable, c.variable), c.threshold, rule.id))
    return out


def _grid(spec: RandIntSlot | UniformSlot) -> tuple[float, float, float, int | None]:
    """(low, high, step, decimals) of a numeric slot; decimals None = no grid (unrounded)."""
    if isinstance(spec, RandIntSlot):
        return spec.randint[0], spec.randint[1], 1.0, 0
    low, high = spec.uniform
    if spec.round is not None:
        return low, high, 10.0**-spec.round, spec.round
    return low, high, (high - low) * _UNROUNDED_STEP, None


def boundary_values(
    spec: RandIntSlot | UniformSlot, threshold: float, spread: int
) -> dict[str, list[int | float]]:
    """Candidate values per side (``below``, ``at``, ``above``) of ``threshold``: up to
    ``spread`` grid steps away, on the slot's grid, inside its declared range. ``at`` exists
    only where the threshold is itself a value the slot can take (38.5 for round 1, not for
    randint); a side with no candidate in range is left out."""
    low, high, step, decimals = _grid(spec)
    if decimals is None:  # unrounded: a grid anchored at the threshold
        at: float | None = threshold
        below = [threshold - k * step for k in range(1, spread + 1)]
        above = [threshold + k * step for k in range(1, spread + 1)]
    else:
        units = threshold / step
        nearest = round(units)
        on_grid = math.isclose(units, nearest, abs_tol=1e-6)
        first_below = nearest - 1 if on_grid else math.floor(units)
        first_above = nearest + 1 if on_grid else math.ceil(units)
        at = nearest * step if on_grid else None
        below = [(first_below - k) * step for k in range(spread)]
        above = [(first_above + k) * step for k in range(spread)]

    def cast(value: float) -> int | float:
        if isinstance(spec, RandIntSlot):
            return round(value)
        return round(value, decimals) if decimals is not None else value

    sides = {"below": below, "at": [at] if at is not None else [], "above": above}
    out = {
        side: [cast(v) for v in values if low <= cast(v) <= high] for side, values in sides.items()
    }
    return {side: values for side, values in out.items() if values}


@dataclass(frozen=True)
class EdgePlanner:
    """Which items are edge cases, and how: compiled once per plan by :func:`compile_edge_cases`."""

    config: EdgeCasesConfig
    boundaries: dict[str, list[Boundary]] = field(default_factory=dict)  # by template id
    variants: dict[str, list[int]] = field(default_factory=dict)  # variant indexes by template id

    def pick(self, template: CompiledTemplate, seed: int, index: int) -> EdgeCase | None:
        """The edge case of item ``index`` (None for an ordinary item). A share ``share`` of
        the items whose template has a boundary or a variant become edge cases; of those, a
        share ``variant_share`` take a variant where the template has both kinds."""
        rng = request_rng(seed, index, "edge-case")
        if rng.random() >= self.config.share:
            return None
        bounds = self.boundaries.get(template.config.id, [])
        variants = self.variants.get(template.config.id, [])
        if not bounds and not variants:
            return None
        if variants and (not bounds or rng.random() < self.config.variant_share):
            number = rng.choice(variants)
            overrides = dict(self.config.variants[number])
            tag: dict[str, Any] = {
                "kind": "variant",
                "slot": None,
                "threshold": None,
                "rule": None,
                "variant": number,  # index in generate.edge_cases.variants
                "overrides": sorted(overrides),
            }
            return EdgeCase(overrides, tag)
        boundary = rng.choice(bounds)
        spec = template.config.slots[boundary.slot]
        assert isinstance(spec, RandIntSlot | UniformSlot)  # checked when compiled
        candidates = boundary_values(spec, boundary.threshold, self.config.spread)
        side = rng.choice(sorted(candidates))
        value = rng.choice(candidates[side])
        tag = {
            "kind": "boundary",
            "slot": boundary.slot,
            "threshold": boundary.threshold,
            "rule": boundary.rule,
            "side": side,
        }
        return EdgeCase({boundary.slot: value}, tag)


def _template_boundaries(
    template: CompiledTemplate,
    candidates: list[Boundary],
    spread: int,
    problems: list[str],
) -> list[Boundary]:
    """The candidates that apply to one template; problems for explicit ones that cannot."""
    kept: dict[tuple[str, float], Boundary] = {}
    for b in candidates:
        spec = template.config.slots.get(b.slot)
        if spec is None or (b.slot, b.threshold) in kept:
            continue
        where = f"generate.edge_cases.boundaries.{b.slot}"
        if not isinstance(spec, RandIntSlot | UniformSlot):
            if b.rule is None:
                problems.append(
                    f"{where}: slot {b.slot!r} of template {template.config.id!r} is a "
                    f"{template.kinds[b.slot]} slot; boundaries need a randint or uniform slot"
                )
            continue
        if not boundary_values(spec, b.threshold, spread):
            if b.rule is None:
                low, high, _, _ = _grid(spec)
                problems.append(
                    f"{where}: threshold {b.threshold} is outside the range [{low}, {high}] of "
                    f"slot {b.slot!r} in template {template.config.id!r}"
                )
            continue  # an auto threshold the slot cannot reach is not an edge of this template
        kept[(b.slot, b.threshold)] = b
    return list(kept.values())


def compile_edge_cases(recipe: Recipe, templates: list[CompiledTemplate]) -> EdgePlanner | None:
    """The planner of ``generate.edge_cases`` (None when off); raise RecipeError naming the
    field for an unknown slot, a threshold outside a slot's range, a non-numeric boundary slot,
    a ``slot_for`` entry no rule uses, or a variant no template can take."""
    cfg = recipe.generation.edge_cases
    if cfg is None:
        return None
    problems: list[str] = []
    all_slots = sorted({s for t in templates for s in t.config.slots})
    rules = load_rule_sources(recipe.quality.rules) if recipe.quality.rules else []
    compared = sorted(
        {c.variable for r in rules for e in (r.when, r.check) if e for c in comparisons(e)}
    )
    for variable, slot in cfg.slot_for.items():
        if variable not in compared:
            problems.append(
                f"generate.edge_cases.slot_for.{variable}: no rule in quality.rules compares "
                f"{variable!r} with a number (compared: {', '.join(compared) or 'none'})"
            )
        if slot not in all_slots:
            problems.append(
                f"generate.edge_cases.slot_for.{variable}: no template has a slot {slot!r} "
                f"(slots: {', '.join(all_slots)})"
            )
    candidates = rule_boundaries(rules, cfg.slot_for) if cfg.auto else []
    for slot, thresholds in cfg.boundaries.items():
        if slot not in all_slots:
            problems.append(
                f"generate.edge_cases.boundaries.{slot}: no template has this slot "
                f"(slots: {', '.join(all_slots)})"
            )
        candidates.extend(Boundary(slot, t, None) for t in thresholds)
    boundaries = {
        t.config.id: _template_boundaries(t, candidates, cfg.spread, problems) for t in templates
    }
    variants: dict[str, list[int]] = {t.config.id: [] for t in templates}
    for number, variant in enumerate(cfg.variants):
        fits = [t.config.id for t in templates if set(variant) <= set(t.config.slots)]
        if not fits:
            problems.append(
                f"generate.edge_cases.variants.{number}: no template has all of the slots "
                f"{sorted(variant)} (slots: {', '.join(all_slots)})"
            )
        for template_id in fits:
            variants[template_id].append(number)
    if problems:
        raise RecipeError(str(recipe.source or "recipe"), problems)
    return EdgePlanner(cfg, boundaries, variants)
