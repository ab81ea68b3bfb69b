"""Federated fixtures: a small hospitals recipe on the session's tiny model."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, TINY_TRAINING, _merge

EXAMPLE = ROOT / "examples" / "federated-hospitals"


def write_federated_recipe(
    folder: Path, base: Path, per_client: int = 30, overrides: dict | None = None
) -> Path:
    """The hospitals example made small: ``per_client`` notes per hospital, the tiny base,
    one local epoch per round; returns the recipe path."""
    recipe = yaml.safe_load((EXAMPLE / "recipe.yaml").read_text(encoding="utf-8"))
    (folder / "data").mkdir(parents=True, exist_ok=True)
    for source in sorted((EXAMPLE / "data").glob("hospital-*.jsonl")):
        lines = source.read_text(encoding="utf-8").splitlines()[:per_client]
        (folder / "data" / source.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    small = {
        **TINY_TRAINING,
        "train": {"base": str(base), "batch_size": 8, "epochs": 1},
        "federated": {"rounds": 3, "local_epochs": 1, "round_timeout": 120},
    }
    for source in (small, overrides or {}):
        _merge(recipe, source)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def federated_recipe(tmp_path: Path, tiny_model_dir: Path) -> Path:
    return write_federated_recipe(tmp_path, tiny_model_dir)


@pytest.fixture
def example_data(tmp_path: Path) -> Path:
    target = tmp_path / "example-data"
    shutil.copytree(EXAMPLE / "data", target)
    return target
