"""Every small-state adapter method federates: a client round starts from the received
arrays, changes only them, and returns arrays of the same shapes; the base is untouched."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from synthtune.config import load_recipe
from synthtune.federated.local_round import train_round
from synthtune.federated.params import adapter_arrays, base_fingerprint, load_adapter_arrays
from synthtune.federated.server import fresh_adapter
from synthtune.federated.workspace import client_records, round_recipe, write_client_tables
from tests.federated.conftest import write_federated_recipe


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "prefix", "ia3"])
def test_a_client_round_trains_the_adapter_state_only(
    method: str, tmp_path: Path, tiny_model_dir: Path
) -> None:
    path = write_federated_recipe(tmp_path, tiny_model_dir, overrides={"train": {"method": method}})
    recipe = load_recipe(path)
    run_dir = tmp_path / "client"
    write_client_tables(
        recipe, client_records(recipe, tmp_path / "data" / "hospital-a.jsonl"), run_dir
    )
    model, _ = fresh_adapter(recipe, str(tiny_model_dir))
    before = base_fingerprint(model)
    start = [a + 0.01 for a in adapter_arrays(model)]  # a "global" adapter, not the init
    arrays, summary = train_round(round_recipe(recipe, str(tiny_model_dir), 1.0), run_dir, 1, start)

    assert [a.shape for a in arrays] == [a.shape for a in start]
    assert any(not np.allclose(a, b) for a, b in zip(arrays, start, strict=True))
    assert summary["steps"] > 0
    load_adapter_arrays(model, arrays)
    assert base_fingerprint(model) == before  # only the adapter travelled
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert sum(a.size for a in arrays) == trainable


@pytest.mark.slow
def test_fedprox_term_holds_the_client_near_the_global_adapter(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """The proximal gradient mu (w - w_global) pulls back: a large mu moves the adapter
    much less from the received weights than plain local training does."""
    recipe = load_recipe(write_federated_recipe(tmp_path, tiny_model_dir))
    run_dir = tmp_path / "client"
    records = client_records(recipe, tmp_path / "data" / "hospital-a.jsonl")
    write_client_tables(recipe, records, run_dir)
    model, _ = fresh_adapter(recipe, str(tiny_model_dir))
    start = adapter_arrays(model)
    # three epochs: the first step is warm-up (learning rate 0), so w moves from step 2 on
    per_round = round_recipe(recipe, str(tiny_model_dir), 3.0)

    def moved(mu: float) -> float:
        arrays, _ = train_round(per_round, run_dir, 1, start, mu, label=f"mu-{mu}")
        return float(sum(((a - s) ** 2).sum() for a, s in zip(arrays, start, strict=True)))

    assert moved(500.0) < 0.5 * moved(0.0)
