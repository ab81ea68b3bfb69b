import shutil
from pathlib import Path

import pytest

from synthtune.config import load_recipe
from synthtune.pipeline import run_recipe
from tests.conftest import write_recipe


@pytest.fixture(scope="module")
def filtered_run(tmp_path_factory) -> Path:
    """A run completed through the quality stage (review sample flagged), built once."""
    folder = tmp_path_factory.mktemp("review")
    # ratio 10:1 makes the mix take every accepted synthetic record
    recipe = write_recipe(
        folder, {"quality": {"review": {"fraction": 0.25}}, "mix": {"ratio": "10:1"}}
    )
    result = run_recipe(load_recipe(recipe), folder / "runs", until="quality", quiet=True)
    return result.run_dir


@pytest.fixture
def run_copy(filtered_run: Path, tmp_path: Path) -> Path:
    """A private copy, so tests that write decisions do not see each other's."""
    target = tmp_path / filtered_run.name
    shutil.copytree(filtered_run, target)
    return target
