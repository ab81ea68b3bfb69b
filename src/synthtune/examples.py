"""Locate the example recipes shipped with the package (or the source checkout)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from synthtune.errors import SynthtuneError

DEMO = "medical-qa"


def examples_dir() -> Path:
    """``synthtune/_examples`` in an installed wheel; ``examples/`` in an editable checkout."""
    packaged = Path(str(resources.files("synthtune"))) / "_examples"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "examples"
    if checkout.is_dir():
        return checkout
    raise SynthtuneError("the example recipes are missing from this installation")


def example_recipe(name: str = DEMO) -> Path:
    path = examples_dir() / name / "recipe.yaml"
    if not path.exists():
        known = ", ".join(sorted(p.name for p in examples_dir().iterdir() if p.is_dir()))
        raise SynthtuneError(f"no example {name!r}; examples: {known}")
    return path
