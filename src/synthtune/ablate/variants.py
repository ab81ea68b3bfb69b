"""Variant recipes: the base recipe with each variant's patch deep-merged in, validated up front.

A patch is what the user would have written in the recipe: mappings merge key by key, any
other value (a list, a number) replaces. ``null`` sets the field to null, which removes an
optional section (``generate: null`` = real-only, ``quality.judge: null``) or turns a nullable
setting off (``dedup.minhash_threshold: null``); where a field cannot be null (``quality:
null``) it goes back to its default. Every problem is named ``ablate.variants.<name>.<field>``.
"""

from __future__ import annotations

import copy
import re
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from synthtune.config import Recipe, format_validation_error
from synthtune.config.yamlio import read_yaml
from synthtune.errors import RecipeError, StageError


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A new mapping: ``base`` with ``patch`` merged in (neither is modified)."""
    out = copy.deepcopy(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _model_of(annotation: Any) -> type[BaseModel] | None:
    options = typing.get_args(annotation) or (annotation,)
    return next((a for a in options if isinstance(a, type) and issubclass(a, BaseModel)), None)


def _nullable(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return annotation is None or (
        origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)
    )


def drop_invalid_nulls(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """Remove the ``None`` values of fields that cannot be null (back to their default)."""
    out = {}
    for key, value in data.items():
        field = model.model_fields.get(key)
        if field is not None and value is None and not _nullable(field.annotation):
            continue
        inner = _model_of(field.annotation) if field is not None else None
        out[key] = drop_invalid_nulls(value, inner) if inner and isinstance(value, dict) else value
    return out


def _named(prefix: str, problem: str) -> str:
    """``ablate.variants.<name>.<field>: ...`` when the problem starts with a field path."""
    if problem.startswith("(top level)"):
        return prefix + problem.removeprefix("(top level)")
    return (
        f"{prefix}.{problem}"
        if re.match(r"^[A-Za-z_][\w.-]*: ", problem)
        else f"{prefix}: {problem}"
    )


def _base_mapping(recipe: Recipe) -> tuple[dict[str, Any], Path | None]:
    """The recipe as its author wrote it (so validators see the same input), and the folder
    its relative paths resolve against; a recipe built in Python uses its set fields."""
    if recipe.source is not None and Path(recipe.source).exists():
        raw = read_yaml(Path(recipe.source))
        return raw, Path(recipe.source).parent
    return recipe.model_dump(mode="json", exclude_unset=True), None


def variant_recipes(recipe: Recipe, names: list[str] | None = None) -> dict[str, Recipe]:
    """``{variant: recipe}`` for the recipe's ``ablate`` section (``names``: a subset, in
    this order), each validated like a recipe file plus every stage's deep check."""
    from synthtune.pipeline import check_recipe

    where = str(recipe.source or "the recipe")
    if recipe.ablate is None:
        raise RecipeError(where, ["ablate: the recipe has no ablate section (docs/ablations.md)"])
    patches = recipe.ablate.patches()
    chosen = list(patches) if names is None else names
    unknown = [n for n in chosen if n not in patches]
    if unknown:
        raise RecipeError(
            where,
            [
                f"ablate.variants: no variant {n!r} (declared: {', '.join(patches)})"
                for n in unknown
            ],
        )
    base, folder = _base_mapping(recipe)
    base.pop("ablate", None)
    out: dict[str, Recipe] = {}
    problems: list[str] = []
    for name in chosen:
        prefix = f"ablate.variants.{name}"
        merged = drop_invalid_nulls(deep_merge(base, patches[name]), Recipe)
        context = {"base_dir": folder.resolve()} if folder is not None else None
        try:
            variant = Recipe.model_validate(merged, context=context)
        except ValidationError as exc:
            problems.extend(_named(prefix, p) for p in format_validation_error(exc, Recipe))
            continue
        variant.source = recipe.source
        try:
            check_recipe(variant)
        except RecipeError as exc:
            problems.extend(_named(prefix, p) for p in exc.problems)
            continue
        except StageError as exc:
            problems.append(f"{prefix}: {exc}")
            continue
        out[name] = variant
    if problems:
        raise RecipeError(where, problems)
    return out


def with_train_seed(recipe: Recipe, seed: int) -> Recipe:
    """The recipe with only ``train.seed`` changed (splits and generation keep theirs)."""
    return recipe.model_copy(update={"train": recipe.train.model_copy(update={"seed": seed})})
