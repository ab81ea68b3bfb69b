"""Shared fixtures: tests force CPU, build tiny models locally, and use a temp run dir each."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import yaml

os.environ["CUDA_VISIBLE_DEVICES"] = ""
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "medical-qa"


# One epoch on a one-layer local-tiny: the smallest model and training that still run for real.
TINY_TRAINING = {
    "train": {"epochs": 1, "batch_size": 8},
    "local_tiny": {
        "vocab_size": 400,
        "hidden_size": 32,
        "layers": 1,
        "heads": 2,
        "pretrain_epochs": 0.2,
    },
}


def write_recipe(folder: Path, overrides: dict | None = None) -> Path:
    """The demo recipe made small (fast), with optional deep overrides; returns its path."""
    recipe = yaml.safe_load((EXAMPLE / "recipe.yaml").read_text(encoding="utf-8"))
    shutil.copy(EXAMPLE / "rules.yaml", folder / "rules.yaml")
    (folder / "data").mkdir(exist_ok=True)
    lines = (EXAMPLE / "data" / "real.jsonl").read_text(encoding="utf-8").splitlines()[:160]
    (folder / "data" / "real.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    small = {
        "generate": {"n": 48, "flush_every": 8},
        **TINY_TRAINING,
        "quality": {"perplexity": {"max": 1e9}},
    }
    for source in (small, overrides or {}):
        _merge(recipe, source)
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _merge(target: dict, source: dict) -> None:
    for key, value in source.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = value


@pytest.fixture
def small_recipe(tmp_path: Path) -> Path:
    return write_recipe(tmp_path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local-tiny model built once per test session."""
    from synthtune.config import LocalTinyConfig
    from synthtune.models import build_local_tiny

    out = tmp_path_factory.mktemp("tiny")
    texts = [
        f"Patient {i} reports a temperature of {36 + i % 5}.5 °C and a cough." for i in range(60)
    ]
    cfg = LocalTinyConfig(vocab_size=300, hidden_size=32, layers=1, heads=2, pretrain_epochs=1)
    build_local_tiny(out, texts, texts, cfg, seed=3)
    return out


@pytest.fixture(scope="session")
def chatty_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local-tiny pre-trained on chat-formatted replies: its greedy replies are long and
    varied, which generation tests need to tell batching or stopping bugs apart."""
    from synthtune.config import LocalTinyConfig
    from synthtune.models import build_local_tiny

    out = tmp_path_factory.mktemp("chatty")
    texts = [
        f"<|user|>\nPatient {i} has {36 + i % 5}.5 °C.\n<|assistant|>\n"
        f"Rest, drink water and check the temperature of patient {i} again in {i % 7} hours."
        for i in range(80)
    ]
    cfg = LocalTinyConfig(vocab_size=400, hidden_size=64, layers=2, heads=2, pretrain_epochs=4)
    build_local_tiny(out, texts, texts, cfg, seed=5)
    return out
