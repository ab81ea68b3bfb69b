"""A party's run directory: the shared base model and a client's own train/val tables.

Every party must load the same base (adapters are only meaningful on it). A model id or path
is shared as is; ``local-tiny`` is built from the recipe alone - the general corpus and the
generate section's strings, never a client's records - so every party can build the same one
without data leaving it (the client checks the server's base fingerprint each round).
"""

from __future__ import annotations

from pathlib import Path

from synthtune.config import Recipe
from synthtune.errors import RecipeError, StageError
from synthtune.models import LOCAL_TINY, ModelResolver
from synthtune.realdata import load_real
from synthtune.records import Record, split_of
from synthtune.store import RunStore


def check_recipe(recipe: Recipe) -> None:
    """What federation supports: causal-LM SFT with an adapter method (small trainable
    state). A classifier's head depends on each client's label set, which may differ."""
    from synthtune.train.methods import METHODS

    problems = []
    if recipe.train.task != "causal_lm":
        problems.append("train.task: federated training supports causal_lm")
    if not METHODS.get(recipe.train.method).adapter:
        problems.append(
            f"train.method: {recipe.train.method} trains base weights; federated training "
            "sends adapters only (lora, dora, prefix, prompt, ptuning, ia3)"
        )
    if problems:
        raise RecipeError(str(recipe.source), problems)


def shared_base(recipe: Recipe, root: Path, log: object = print) -> str:
    """Path or id of the base every party trains on (built under ``root`` for local-tiny)."""
    if recipe.train.base != LOCAL_TINY:
        return recipe.train.base
    data_free = recipe.model_copy(update={"mix": recipe.mix.model_copy(update={"real": None})})
    return ModelResolver(root, data_free, log=log).resolve(LOCAL_TINY)


def round_recipe(recipe: Recipe, base: str, local_epochs: float) -> Recipe:
    """The recipe a client's train stage runs each round: the shared base, E local epochs.

    Metric loggers are off: a round is one short train run, its numbers go to the server.
    """
    train = recipe.train.model_copy(update={"base": base, "epochs": local_epochs, "log_to": []})
    return recipe.model_copy(update={"train": train})


def client_records(recipe: Recipe, data: Path) -> list[Record]:
    """A client's records from its data file/folder, read with ``mix.real``'s mapping."""
    if recipe.mix.real is None:
        raise RecipeError(
            str(recipe.source), ["mix.real: set the column mapping clients read their data with"]
        )
    return load_real(recipe.mix.real.model_copy(update={"path": Path(data)}))


def write_client_tables(recipe: Recipe, records: list[Record], run_dir: Path) -> dict[str, int]:
    """Split a client's records like the mix stage does (by id) into ``mix/train`` and
    ``mix/val`` (``mix/test`` keeps the rest); returns the split sizes."""
    mix = recipe.mix
    splits: dict[str, list[Record]] = {"train": [], "val": [], "test": []}
    for record in records:
        splits[split_of(record.id, recipe.seed, mix.val_fraction, mix.test_fraction)].append(record)
    if len(splits["train"]) < 2:
        raise StageError(f"federated: {run_dir.name} has {len(records)} records; too few to train")
    if not splits["val"]:  # a small client: keep one record to validate on
        splits["val"].append(splits["train"].pop())
    store = RunStore(run_dir)
    for name, part in splits.items():
        store.write_table("mix", name, part)
    return {name: len(part) for name, part in splits.items()}
