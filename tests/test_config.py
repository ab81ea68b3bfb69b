from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.config import Recipe, load_recipe
from synthtune.errors import RecipeError
from tests.conftest import write_recipe


def _edit(path: Path, edit) -> Path:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    edit(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_defaults_follow_the_mission(small_recipe: Path) -> None:
    recipe = Recipe.model_validate(
        {"name": "x", "generate": {"templates": [{"id": "t", "prompt": "p", "response": "r"}]}}
    )
    assert recipe.quality.perplexity.max == 20
    assert recipe.quality.review.fraction == 0.10
    assert recipe.mix.ratio == "1:3" and recipe.mix.synthetic_per_real() == pytest.approx(1 / 3)
    assert recipe.mix.stop_when.wasserstein_below == 0.15
    lora = recipe.train.lora
    assert (lora.r, lora.alpha, lora.dropout) == (16, 32, 0.1)
    assert recipe.train.learning_rates() == (1e-3, 1e-5)  # lr auto, causal_lm
    assert recipe.train.freeze.layernorm is True
    assert recipe.train.max_grad_norm == 1.0
    assert recipe.train.early_stopping.patience == 3
    assert recipe.train.augment.noise_prob == 0.3


def test_misspelt_section_is_named_with_a_suggestion(small_recipe: Path) -> None:
    _edit(small_recipe, lambda d: d.__setitem__("trian", d.pop("train")))
    with pytest.raises(RecipeError) as err:
        load_recipe(small_recipe)
    message = str(err.value)
    assert "trian: unknown key (did you mean 'train'?)" in message
    assert str(small_recipe) in message


def test_wrong_type_names_the_field_path(small_recipe: Path) -> None:
    _edit(small_recipe, lambda d: d["train"]["lora"].__setitem__("r", "sixteen"))
    with pytest.raises(RecipeError) as err:
        load_recipe(small_recipe)
    assert "train.lora.r:" in str(err.value)
    assert "sixteen" in str(err.value)


def test_slot_errors_name_the_slot(small_recipe: Path) -> None:
    def bad(d):
        d["generate"]["templates"][0]["slots"]["gender"] = {"choice": ["a", "b"], "weights": [1]}

    _edit(small_recipe, bad)
    with pytest.raises(RecipeError) as err:
        load_recipe(small_recipe)
    assert "generate.templates.0.slots.gender" in str(err.value)
    assert "1 weights for 2 choices" in str(err.value)


def test_relative_paths_resolve_against_the_recipe_folder(
    small_recipe: Path, monkeypatch: pytest.MonkeyPatch, tmp_path_factory
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    recipe = load_recipe(small_recipe)
    assert recipe.mix.real is not None
    assert recipe.mix.real.path == small_recipe.parent / "data" / "real.jsonl"
    assert recipe.quality.rules == [str(small_recipe.parent / "rules.yaml")]


@pytest.mark.parametrize(
    "edit",
    [
        lambda d: d.__setitem__("trian", d.pop("train")),
        lambda d: d["train"]["lora"].__setitem__("r", "sixteen"),
        lambda d: d["generate"]["templates"][0].__setitem__("prompt", "{{ undefined_slot }}"),
        lambda d: d["mix"]["real"].__setitem__("path", "missing.jsonl"),
    ],
    ids=["misspelt-key", "wrong-type", "undefined-slot", "missing-file"],
)
def test_validate_exits_2_and_writes_nothing(tmp_path: Path, edit, monkeypatch) -> None:
    recipe = _edit(write_recipe(tmp_path), edit)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["validate", str(recipe)])
    assert result.exit_code == 2, result.output
    assert "error" in result.output
    assert not (tmp_path / "runs").exists()
    result = CliRunner().invoke(app, ["run", str(recipe), "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2
    assert not (tmp_path / "runs").exists()


def test_validate_accepts_the_example(small_recipe: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(small_recipe)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.output


def test_every_shipped_example_validates() -> None:
    from synthtune.examples import examples_dir
    from synthtune.pipeline import check_recipe

    recipes = sorted(examples_dir().glob("*/recipe*.yaml"))
    assert len(recipes) >= 9  # eight examples, and the synthetic variant of health-outlets
    checked = 0
    for path in recipes:
        recipe = load_recipe(path)  # every recipe parses
        # examples on packaged real models whose extra (e5, smollm2) is not in [dev] are deep
        # checked only where the model's package is installed
        if not _missing_packaged_models(recipe):
            check_recipe(recipe)
            checked += 1
    assert checked >= 7


def _missing_packaged_models(recipe: Recipe) -> list[str]:
    from synthtune.model_names import PACKAGED_MODELS, offline_problem, recipe_models

    return [
        name
        for _, name, marker in recipe_models(recipe)
        if name in PACKAGED_MODELS and offline_problem(name, marker)
    ]
