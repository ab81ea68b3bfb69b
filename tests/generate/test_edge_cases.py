"""Edge cases aimed at the rules: thresholds, planning, tags in lineage, config errors."""

from pathlib import Path

import pytest

from synthtune.config import RandIntSlot, Recipe, UniformSlot, load_recipe
from synthtune.errors import RecipeError
from synthtune.generate.edge_cases import boundary_values, comparisons, rule_boundaries
from synthtune.generate.stage import make_strategy
from synthtune.generate.strategies.base import WorkItem, plan_template_items
from synthtune.pipeline import run_recipe
from synthtune.rules import load_rule_sources
from synthtune.store import RunStore
from tests.conftest import EXAMPLE, write_recipe


def _recipe(tmp_path: Path, edge_cases: dict | None, **generate) -> Recipe:
    path = write_recipe(tmp_path, {"generate": {"edge_cases": edge_cases, **generate}})
    return load_recipe(path)


def _edges(items: list[WorkItem]) -> list[WorkItem]:
    return [it for it in items if it.edge_case is not None]


def test_comparisons_are_read_from_rule_expressions() -> None:
    assert [(c.variable, c.op, c.threshold) for c in comparisons("temp < 38.5")] == [
        ("temp", "<", 38.5)
    ]
    assert [(c.variable, c.op) for c in comparisons("38.5 > temp")] == [("temp", "<")]
    chain = comparisons("18 <= age < 65 and (dose == -3 or label != 'x')")
    assert {(c.variable, c.op, c.threshold) for c in chain} == {
        ("age", ">=", 18),
        ("age", "<", 65),
        ("dose", "==", -3),
    }
    assert comparisons("a < b") == [] and comparisons("label == 'positive'") == []
    assert comparisons("flag == True") == []  # a bool is not a threshold


def test_thresholds_come_from_the_example_rules_and_packs() -> None:
    rules = load_rule_sources([str(EXAMPLE / "rules.yaml")])
    found = {(b.slot, b.threshold, b.rule) for b in rule_boundaries(rules, {})}
    assert found == {("temp", 38.5, "no-antipyretic-below-38.5"), ("age", 65, "senior-sees-doctor")}
    pack = rule_boundaries(load_rule_sources(["pack:medical"]), {"dose": "mg"})
    assert ("mg", 800, "ibuprofen-single-dose") in {(b.slot, b.threshold, b.rule) for b in pack}


def test_boundary_values_sit_on_the_slot_grid_inside_its_range() -> None:
    age = RandIntSlot(randint=(18, 80))
    assert boundary_values(age, 65, 2) == {"below": [64, 63], "at": [65], "above": [66, 67]}
    temp = UniformSlot(uniform=(36.5, 40.0), round=1)
    assert boundary_values(temp, 38.5, 2) == {
        "below": [38.4, 38.3],
        "at": [38.5],
        "above": [38.6, 38.7],
    }
    # 38.5 is no integer: an integer slot has no `at`, just the neighbours
    assert boundary_values(RandIntSlot(randint=(30, 45)), 38.5, 1) == {
        "below": [38],
        "above": [39],
    }
    # the declared range clips: nothing above 65 when the slot stops there
    assert boundary_values(RandIntSlot(randint=(18, 65)), 65, 3) == {
        "below": [64, 63, 62],
        "at": [65],
    }
    assert boundary_values(age, 95, 2) == {}
    unrounded = boundary_values(UniformSlot(uniform=(0.0, 10.0)), 5.0, 1)
    assert unrounded == {"below": [4.9], "at": [5.0], "above": [5.1]}


def test_share_is_respected_and_values_sit_near_thresholds(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, {"share": 0.15, "spread": 2}, n=800)
    items = plan_template_items(recipe, recipe.generate.n)
    edges = _edges(items)
    assert 0.12 < len(edges) / len(items) < 0.18
    sides = set()
    for item in edges:
        tag = item.edge_case
        assert tag is not None and tag["kind"] == "boundary"
        value = item.slots[tag["slot"]]
        step = 1 if tag["slot"] == "age" else 0.1
        assert abs(value - tag["threshold"]) <= 2 * step + 1e-9
        low, high = (18, 80) if tag["slot"] == "age" else (36.5, 40.0)
        assert low <= value <= high
        sides.add(tag["side"])
        if tag["slot"] == "age":  # the derived slot follows the boundary value
            assert item.slots.get("age_group", "n/a") in (
                "n/a",
                "senior" if value >= 65 else "adult",
            )
        else:
            assert round(value, 1) == value
    assert sides == {"below", "at", "above"}
    assert {it.edge_case["rule"] for it in edges if it.edge_case} == {
        "no-antipyretic-below-38.5",
        "senior-sees-doctor",
    }


def test_planning_is_deterministic_and_ordinary_items_are_unchanged(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path, {"share": 0.3}, n=200)
    first = plan_template_items(recipe, 200)
    again = plan_template_items(recipe, 200)
    assert [(i.key, i.slots, i.edge_case) for i in first] == [
        (i.key, i.slots, i.edge_case) for i in again
    ]
    other_seed = plan_template_items(recipe.model_copy(update={"seed": 8}), 200)
    assert [i.edge_case for i in other_seed] != [i.edge_case for i in first]
    plain = plan_template_items(_recipe(tmp_path, None, n=200), 200)
    for edge_on, edge_off in zip(first, plain, strict=True):
        if edge_on.edge_case is None:  # same slots, same key: a resumed run reuses the record
            assert (edge_on.key, edge_on.slots) == (edge_off.key, edge_off.slots)
        else:
            assert edge_on.key != edge_off.key


def test_explicit_variants_and_boundaries(tmp_path: Path) -> None:
    variant = {"symptom": "a persistent fever", "temp": 36.6}
    recipe = _recipe(
        tmp_path,
        {"share": 0.5, "auto": False, "boundaries": {"days": [4]}, "variants": [variant]},
        n=300,
    )
    edges = _edges(plan_template_items(recipe, 300))
    kinds = {(it.template.config.id, it.edge_case["kind"]) for it in edges if it.edge_case}
    # followup has neither `days` nor `temp`: it gets no edge case at all
    assert kinds == {("consult", "variant"), ("consult", "boundary")}
    for item in edges:
        tag = item.edge_case
        assert tag is not None
        if tag["kind"] == "variant":
            assert {k: item.slots[k] for k in variant} == variant
            assert (
                tag["variant"] == 0 and tag["rule"] is None and tag["overrides"] == sorted(variant)
            )
        else:
            assert tag["slot"] == "days" and tag["rule"] is None and 2 <= item.slots["days"] <= 6


@pytest.mark.parametrize(
    ("edge_cases", "message"),
    [
        ({"boundaries": {"tmp": [38]}}, "edge_cases.boundaries.tmp: no template has this slot"),
        ({"boundaries": {"temp": [45]}}, "threshold 45.0 is outside the range [36.5, 40.0]"),
        ({"boundaries": {"gender": [1]}}, "'gender' of template 'consult' is a choice slot"),
        ({"slot_for": {"temp": "temperature"}}, "slot_for.temp: no template has a slot"),
        ({"slot_for": {"fever": "temp"}}, "slot_for.fever: no rule in quality.rules compares"),
        ({"variants": [{"tmp": 1}]}, "edge_cases.variants.0: no template has all of the slots"),
    ],
)
def test_config_errors_name_the_field(tmp_path: Path, edge_cases: dict, message: str) -> None:
    recipe = _recipe(tmp_path, edge_cases)
    with pytest.raises(RecipeError) as err:
        plan_template_items(recipe, 4)
    assert message in str(err.value)


def test_field_errors_and_doc_qa_are_reported_up_front(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"generate.edge_cases.share: Input should be less"):
        _recipe(tmp_path, {"share": 1.5})
    doc_qa = {"type": "doc-qa", "documents": [str(EXAMPLE)]}
    with pytest.raises(RecipeError, match="edge_cases: the doc-qa strategy plans items from"):
        _recipe(tmp_path, {"share": 0.1}, strategy=doc_qa)


def test_every_template_strategy_plans_edge_cases(tmp_path: Path) -> None:
    strategies = [
        {"type": "self-instruct", "seed_tasks": ["Explain a fever.", "Explain a cough."]},
        {"type": "evol-instruct", "rounds": 1},
    ]
    for strategy in strategies:
        recipe = _recipe(tmp_path, {"share": 0.4}, n=60, strategy=strategy)
        items = make_strategy(recipe).plan()
        assert 10 < len(_edges(items)) < 40, strategy["type"]


def test_tags_reach_lineage_and_the_quality_summary(tmp_path: Path) -> None:
    path = write_recipe(
        tmp_path,
        {
            "generate": {"n": 60, "edge_cases": {"share": 0.5}},
            "quality": {"perplexity": {"enabled": False}},
        },
    )
    recipe = load_recipe(path)
    planned = {it.key: it.edge_case for it in plan_template_items(recipe, 60)}
    result = run_recipe(recipe, tmp_path / "runs", until="quality", quiet=True)
    records = RunStore(result.run_dir).read_table("generate", "dataset")
    for record in records:
        assert record.lineage.get("edge_case") == planned[record.lineage["request_key"]]
    tagged = [r for r in records if "edge_case" in r.lineage]
    assert 15 < len(tagged) < 45
    quality = RunStore(result.run_dir).read_table("quality", "dataset")
    summary = next(o.summary for o in result.outcomes if o.name == "quality")
    assert summary["edge_cases"] == {
        "generated": len(tagged),
        "accepted": sum("edge_case" in r.lineage and r.status == "accepted" for r in quality),
    }
