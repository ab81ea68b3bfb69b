"""Variant recipes: patches deep-merged into the recipe, built-in names, and bad patches
reported as recipe errors naming ``ablate.variants.<name>.<field>`` before any work."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from synthtune.ablate.runner import plan
from synthtune.ablate.variants import deep_merge, drop_invalid_nulls, variant_recipes
from synthtune.config import Recipe, load_recipe
from synthtune.errors import RecipeError
from synthtune.executor import LocalExecutor
from tests.ablate.tiny_recipe import write_tiny_recipe


def test_deep_merge_merges_mappings_replaces_the_rest_and_null_deletes() -> None:
    base: dict[str, Any] = {
        "generate": {"n": 16},
        "mix": {"ratio": "1:3", "real": {"path": "a"}},
        "x": [1],
    }
    patch = {"generate": None, "mix": {"ratio": "1:1"}, "x": [2, 3]}
    merged = deep_merge(base, patch)
    assert merged == {"generate": None, "mix": {"ratio": "1:1", "real": {"path": "a"}}, "x": [2, 3]}
    assert base["mix"]["ratio"] == "1:3"  # inputs untouched
    # null on a field that cannot be null goes back to its default; nullable fields keep it
    cleaned = drop_invalid_nulls(
        {"quality": None, "train": {"lora": None, "seed": None}, "generate": None}, Recipe
    )
    assert cleaned == {"train": {"seed": None}, "generate": None}


def test_built_in_and_declared_variants(tmp_path: Path) -> None:
    path = write_tiny_recipe(
        tmp_path,
        {
            "seeds": [3, 5],
            "variants": {
                "real-only": None,
                "real+synthetic": None,
                "unfiltered": None,
                "ratio-1-1": {"mix": {"ratio": "1:1"}, "quality": {"judge": None}},
            },
            "reference": "real+synthetic",
        },
    )
    recipe = load_recipe(path)
    recipes = variant_recipes(recipe)
    assert recipes["real-only"].generate is None
    assert recipes["real+synthetic"].generate is not None
    assert recipes["ratio-1-1"].mix.ratio == "1:1"
    assert recipes["ratio-1-1"].mix.real is not None  # the rest of mix kept
    unfiltered = recipes["unfiltered"].quality
    assert unfiltered.dedup.minhash_threshold is None and not unfiltered.heuristics.enabled
    assert unfiltered.decontam.enabled  # kept on: leaks would inflate the compared score
    runs = plan(recipe, tmp_path / "runs", variants=["ratio-1-1", "real-only"])
    assert [(r.variant, r.seed, r.recipe.train.seed) for r in runs] == [
        ("ratio-1-1", 3, 3),
        ("real-only", 3, 3),
        ("ratio-1-1", 5, 5),
        ("real-only", 5, 5),
    ]
    assert {r.recipe.seed for r in runs} == {1}  # splits and generation keep the recipe seed
    assert runs[0].run_dir == tmp_path / "runs" / "tiny-ablate" / "ablate" / "ratio-1-1--s3"


def test_a_bad_patch_names_the_variant_field(tmp_path: Path) -> None:
    path = write_tiny_recipe(
        tmp_path,
        {"variants": {"real-only": None, "bad": {"train": {"lora": {"r": "sixteen"}}}}},
    )
    with pytest.raises(RecipeError) as err:
        plan(load_recipe(path), tmp_path / "runs")
    assert any(p.startswith("ablate.variants.bad.train.lora.r:") for p in err.value.problems)
    assert not (tmp_path / "runs").exists()  # no work, no folder


def test_unknown_names_are_recipe_errors(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not a built-in variant"):
        load_recipe(write_tiny_recipe(tmp_path, {"variants": ["real-only", "no-such"]}))
    recipe = load_recipe(write_tiny_recipe(tmp_path, {"variants": ["real-only"]}))
    with pytest.raises(RecipeError, match="no variant 'nope'"):
        plan(recipe, tmp_path / "runs", variants=["nope"])
    with pytest.raises(RecipeError, match="perplexity is not measured"):
        plan(
            load_recipe(write_tiny_recipe(tmp_path, {"metrics": ["perplexity"]})),
            tmp_path / "runs",
        )


def test_unfiltered_keeps_the_rules_and_shares_generation(tmp_path: Path) -> None:
    """Rules also plan edge cases: `unfiltered` checks them without rejecting, so its
    generation fingerprint equals real+synthetic's and one generation feeds both."""
    from types import SimpleNamespace

    from synthtune.pipeline import fingerprints
    from synthtune.quality.stage import rules_tier
    from synthtune.records import Message, Payload, Record
    from tests.conftest import write_recipe

    path = write_recipe(
        tmp_path,
        {
            "generate": {"edge_cases": {"share": 0.5}},
            "ablate": {"variants": ["real+synthetic", "unfiltered"], "reference": "unfiltered"},
        },
    )
    recipes = variant_recipes(load_recipe(path))
    filtered, unfiltered = recipes["real+synthetic"], recipes["unfiltered"]
    assert unfiltered.quality.rules == filtered.quality.rules and filtered.quality.rules
    prints = [fingerprints(r, tmp_path / "runs")["generate"] for r in (filtered, unfiltered)]
    assert prints[0] == prints[1]

    def record() -> Record:
        prompt = "Patient: 30-year-old male. Temperature 37.2 °C. What should the patient do?"
        return Record.create(
            "synthetic",
            Payload(
                messages=[
                    Message(role="user", content=prompt),
                    Message(role="assistant", content="Take ibuprofen and rest."),
                ]
            ),
        )

    kept, rejected = record(), record()
    rules_tier(SimpleNamespace(recipe=unfiltered, executor=LocalExecutor()), [kept])
    rules_tier(SimpleNamespace(recipe=filtered, executor=LocalExecutor()), [rejected])
    assert rejected.status == "rejected" and "rules: no-antipyretic-below-38.5" in rejected.reasons
    assert kept.status == "accepted"
    assert [o["ok"] for o in kept.quality["rules"]] == [o["ok"] for o in rejected.quality["rules"]]
    assert any(not o["ok"] for o in kept.quality["rules"])  # checked and reported all the same
