import pytest

from synthtune.config import Recipe, TemplateConfig
from synthtune.errors import RecipeError
from synthtune.generate.strategies.base import plan_template_items
from synthtune.templates import compile_template

SLOTS = {
    "age": {"randint": [18, 80]},
    "temp": {"uniform": [36.0, 40.0], "round": 1},
    "gender": {"choice": ["male", "female"], "weights": [3, 1]},
    "others": {"sample": ["a", "b", "c", "d"], "k": [1, 3], "sep": "+"},
    "name": {"faker": "first_name", "locale": "en_US"},
    "group": {"template": "{{ 'senior' if age >= 65 else 'adult' }}"},
    "symptom": {"by": "group", "choice": {"adult": ["cough"], "senior": ["dizziness"]}},
}


def _template(**overrides) -> TemplateConfig:
    return TemplateConfig.model_validate(
        {
            "id": "t",
            "prompt": "{{ age }} {{ symptom }}",
            "response": "ok",
            "slots": SLOTS,
            **overrides,
        }
    )


def _sample(seed: int, n: int = 50) -> list[dict]:
    compiled = compile_template(_template())
    return [compiled.sample_slots(seed, i) for i in range(n)]


def test_same_seed_same_slots_and_different_seed_differs() -> None:
    assert _sample(1) == _sample(1)
    assert _sample(1) != _sample(2)


def test_samplers_respect_their_ranges_and_types() -> None:
    values = _sample(5, 300)
    assert all(18 <= v["age"] <= 80 and isinstance(v["age"], int) for v in values)
    assert all(36.0 <= v["temp"] <= 40.0 and round(v["temp"], 1) == v["temp"] for v in values)
    males = sum(v["gender"] == "male" for v in values) / len(values)
    assert 0.65 < males < 0.85  # weights 3:1
    assert all(1 <= len(v["others"].split("+")) <= 3 for v in values)
    assert len({v["name"] for v in values}) > 20


def test_dependent_slots_follow_their_parent() -> None:
    for v in _sample(9, 200):
        assert v["group"] == ("senior" if v["age"] >= 65 else "adult")
        assert v["symptom"] == ("dizziness" if v["group"] == "senior" else "cough")


def test_reordering_or_adding_slots_keeps_the_other_values() -> None:
    reordered = dict(reversed(list(SLOTS.items())))
    extended = {**SLOTS, "extra": {"randint": [0, 9]}}
    base = compile_template(_template())
    for slots in (reordered, extended):
        other = compile_template(_template(slots=slots))
        for i in range(20):
            a, b = base.sample_slots(3, i), other.sample_slots(3, i)
            assert all(a[k] == b[k] for k in SLOTS)


def test_request_slots_do_not_depend_on_other_requests() -> None:
    template = _template().model_dump(by_alias=True)
    recipe = Recipe.model_validate({"name": "t", "seed": 4, "generate": {"templates": [template]}})
    full = plan_template_items(recipe, 30)
    shorter = plan_template_items(recipe, 10)
    assert [r.key for r in shorter] == [r.key for r in full[:10]]
    assert [r.slots for r in shorter] == [r.slots for r in full[:10]]


def test_cycles_and_unknown_slots_are_recipe_errors() -> None:
    cyclic = {"a": {"template": "{{ b }}"}, "b": {"template": "{{ a }}"}}
    with pytest.raises(RecipeError, match="circular"):
        compile_template(_template(slots=cyclic, prompt="{{ a }}"))
    with pytest.raises(RecipeError, match="undefined slots"):
        compile_template(_template(prompt="{{ nope }}"))


def test_templates_are_sandboxed() -> None:
    compiled = compile_template(_template(prompt="{{ age.__class__.__mro__[1].__subclasses__() }}"))
    with pytest.raises(RecipeError) as caught:  # the sandbox refuses, the field is named
        compiled.render(compiled.sample_slots(0, 0))
    assert caught.value.path == "generate.templates[t].prompt"
    assert caught.value.problems[0].startswith("cannot render: SecurityError: access to")


def test_a_missing_branch_of_a_dependent_choice_is_refused_at_compile_time() -> None:
    slots = {
        "ward": {"choice": ["icu", "er", 3]},
        "bed": {"by": "ward", "choice": {"icu": ["A1"], "er": ["B2"]}},
    }
    with pytest.raises(RecipeError) as caught:
        compile_template(_template(prompt="{{ bed }}", slots=slots))
    assert caught.value.problems == [
        "generate.templates[t].slots.bed.choice: no list for ward = '3'; add one per value of ward"
    ]
    slots["bed"]["choice"]["3"] = ["C3"]  # every value covered: fine
    compile_template(_template(prompt="{{ bed }}", slots=slots))


def test_unknown_faker_provider_or_locale_is_refused_at_compile_time() -> None:
    bad = {
        "who": {"faker": "no_such_provider"},
        "where": {"faker": "city", "locale": "xx_XX"},
        "secret": {"faker": "_Generator__config"},
    }
    with pytest.raises(RecipeError) as caught:
        compile_template(_template(prompt="{{ who }} {{ where }} {{ secret }}", slots=bad))
    problems = caught.value.problems
    assert "generate.templates[t].slots.who.faker: faker has no provider 'no_such_provider'" in (
        problems
    )
    assert any(
        p.startswith("generate.templates[t].slots.where.locale: faker has no") for p in problems
    )
    assert (
        "generate.templates[t].slots.secret.faker: faker has no provider '_Generator__config'"
        in (problems)
    )
