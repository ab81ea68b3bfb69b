"""A LoRA adapter that visibly changes the tiny model, and a running server for the module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from synthtune.serve import ServeLimits, ServeServer, create_app, load_served_models
from synthtune.serve.models import ServedModels, ServeSource

LIMITS = ServeLimits(max_tokens=48, max_prompt_tokens=120, max_concurrent=8)


@pytest.fixture(scope="session")
def lora_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised LoRA (B != 0) on every linear layer: its replies differ."""
    import torch
    from peft import LoraConfig, get_peft_model

    from synthtune.models import load_causal_lm

    torch.manual_seed(11)
    model, tokenizer = load_causal_lm(str(tiny_model_dir), dtype="float32")
    config = LoraConfig(r=4, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    out = tmp_path_factory.mktemp("lora")
    get_peft_model(model, config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def served(tiny_model_dir: Path, lora_dir: Path) -> ServedModels:
    return load_served_models(ServeSource(str(tiny_model_dir), "tiny", {"medical": lora_dir}))


@pytest.fixture(scope="session")
def server(served: ServedModels) -> Iterator[ServeServer]:
    with ServeServer(create_app(served, limits=LIMITS)) as running:
        yield running
