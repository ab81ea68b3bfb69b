"""Values validate used to accept and later failed on (issue 20): each is now refused at
validate with its field path, and a huge `n` validates instantly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from synthtune.config import load_recipe
from synthtune.errors import RecipeError
from synthtune.pipeline import check_recipe
from tests.conftest import write_recipe


def _problems(tmp_path: Path, overrides: dict) -> list[str]:
    recipe = write_recipe(tmp_path, overrides)
    with pytest.raises(RecipeError) as caught:
        check_recipe(load_recipe(recipe))
    return caught.value.problems


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"seed": -1}, "seed: Input should be greater than or equal to 0"),
        ({"seed": 2**40}, "seed: Input should be less than or equal to 4294967295"),
        ({"train": {"seed": -5}}, "train.seed: Input should be greater than or equal to 0"),
        ({"generate": {"n": True}}, "generate.n: Input should be a valid integer"),
        ({"generate": {"n": 1e12}}, "generate.n: Input should be a valid integer"),
        ({"train": {"lr": {"adapter": float("nan")}}}, "finite number"),
        ({"train": {"synthetic_weight": float("inf")}}, "train.synthetic_weight: Input should be"),
        ({"train": {"method": "magic"}}, "train.method: unknown method 'magic'; known: dora"),
        ({"train": {"lora": {"r": 10**9}}}, "train.lora.r: 1000000000 is above the base's hidden"),
    ],
    ids=["seed<0", "seed>2^32", "train.seed<0", "n-bool", "n-float", "nan", "inf", "method", "r"],
)
def test_refused_with_the_field_path(tmp_path: Path, overrides: dict, expected: str) -> None:
    problems = _problems(tmp_path, overrides)
    assert any(expected in p for p in problems), problems
    assert len(problems) == len(set(problems))  # each message once


def test_an_infinite_template_weight_is_refused(tmp_path: Path) -> None:
    import yaml

    recipe = write_recipe(tmp_path)
    raw = yaml.safe_load(recipe.read_text(encoding="utf-8"))
    raw["generate"]["templates"][0]["weight"] = float("inf")
    recipe.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(RecipeError, match=r"generate\.templates\.0\.weight: Input should be a "):
        load_recipe(recipe)


def test_a_huge_n_validates_instantly(tmp_path: Path) -> None:
    recipe = load_recipe(write_recipe(tmp_path, {"generate": {"n": 10**12}}))
    started = time.perf_counter()
    check_recipe(recipe)  # renders the first 1,000 requests, not 10**12
    assert time.perf_counter() - started < 10
