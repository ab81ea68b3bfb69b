"""train.adversarial.on: edge_cases — the adversarial loss comes from edge-case rows only."""

from pathlib import Path

import pytest
import torch

from synthtune.config import AdversarialConfig
from synthtune.train.data import EDGE_FLAG, NoisyCollator, PackedCollator
from synthtune.train.tasks import ClassificationCollator
from tests.train.conftest import step_grads


def _rows(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids cut to one length: no padding, so rows cannot interact through it."""
    rows = [tokenizer(t)["input_ids"] for t in texts]
    width = min(len(r) for r in rows)
    return [r[:width] for r in rows]


def _grads(setup, rows, flags, adversarial: AdversarialConfig | None) -> torch.Tensor:
    """All parameter gradients after one training step on ``rows``."""
    return step_grads(setup, rows, {EDGE_FLAG: torch.tensor(flags, dtype=torch.bool)}, adversarial)


def _adversarial_part(setup, rows, flags, cfg: AdversarialConfig) -> torch.Tensor:
    return _grads(setup, rows, flags, cfg) - _grads(setup, rows, flags, None)


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_adversarial_gradient_flows_only_through_edge_rows(setup, method: str) -> None:
    _, tokenizer, _ = setup
    edge, plain, other = _rows(
        tokenizer,
        [
            "Patient 1 reports a temperature of 38.5 °C.",
            "Patient 2 reports a cough and a cold.",
            "Patient 4 has a sore throat and fatigue.",
        ],
    )
    on_edges = AdversarialConfig(method=method, epsilon=2.0, steps=2, alpha=0.5, on="edge_cases")
    on_all = on_edges.model_copy(update={"on": "all"})

    mixed = _adversarial_part(setup, [edge, plain], [True, False], on_edges)
    assert mixed.abs().max() > 1e-4  # the adversarial pass ran
    # the ordinary row's content does not reach the adversarial gradient ...
    swapped = _adversarial_part(setup, [edge, other], [True, False], on_edges)
    torch.testing.assert_close(mixed, swapped, rtol=1e-4, atol=1e-6)
    # ... which is the adversarial gradient of the edge row on its own
    alone = _adversarial_part(setup, [edge], [True], on_all)
    torch.testing.assert_close(mixed, alone, rtol=1e-4, atol=1e-6)
    # with on: all, both rows count
    everyone = _adversarial_part(setup, [edge, plain], [True, False], on_all)
    assert not torch.allclose(everyone, mixed, rtol=1e-3, atol=1e-5)


def test_a_batch_without_edge_cases_skips_the_adversarial_pass(setup) -> None:
    _, tokenizer, _ = setup
    rows = _rows(tokenizer, ["Patient 2 reports a cough and a cold.", "Patient 4 is dizzy."])
    cfg = AdversarialConfig(method="fgm", epsilon=2.0, on="edge_cases")
    assert torch.equal(
        _grads(setup, rows, [False, False], cfg), _grads(setup, rows, [False, False], None)
    )


def test_collators_carry_the_flag_per_row_or_per_token(setup) -> None:
    _, tokenizer, _ = setup
    features = [
        {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], EDGE_FLAG: True},
        {"input_ids": [8, 9], "labels": [-100, 9], EDGE_FLAG: False},
    ]
    padded = NoisyCollator(tokenizer, 0.0, 0.0, seed=0)(features)
    assert padded[EDGE_FLAG].tolist() == [True, False]
    packed = PackedCollator(tokenizer, 0.0, 0.0, seed=0)(features)
    assert packed[EDGE_FLAG].tolist() == [[True, True, True, False, False]]
    classes = ClassificationCollator(tokenizer, 0.0, 0.0, seed=0)(
        [
            {"input_ids": [5, 6], "labels": 1, EDGE_FLAG: True},
            {"input_ids": [7], "labels": 0, EDGE_FLAG: False},
        ]
    )
    assert classes[EDGE_FLAG].tolist() == [True, False] and classes["labels"].tolist() == [1, 0]
    assert EDGE_FLAG not in NoisyCollator(tokenizer, 0.0, 0.0, seed=0)(
        [{k: v for k, v in f.items() if k != EDGE_FLAG} for f in features]
    )


def test_packed_rows_mask_the_other_examples(setup) -> None:
    from synthtune.train.trainer import edge_only

    inputs = {"input_ids": torch.arange(5)[None], "labels": torch.arange(5)[None]}
    flags = torch.tensor([[True, True, False, False, True]])
    kept, rows, tokens = edge_only(inputs, flags)
    assert rows is None and tokens is flags
    assert kept["labels"].tolist() == [[0, 1, -100, -100, 4]]
    padded = {"input_ids": torch.arange(6).view(3, 2), "use_cache": False}
    kept, rows, tokens = edge_only(padded, torch.tensor([False, True, True]))
    assert kept["input_ids"].tolist() == [[2, 3], [4, 5]] and rows.tolist() == [1, 2]
    assert tokens is None and kept["use_cache"] is False


@pytest.mark.parametrize("batching", ["grouped", "packed"])
def test_train_stage_flags_edge_records(tmp_path: Path, batching: str, monkeypatch) -> None:
    import json
    import math

    from synthtune.config import load_recipe
    from synthtune.pipeline import run_recipe
    from synthtune.train import trainer as trainer_module
    from tests.conftest import write_recipe

    recipe = write_recipe(
        tmp_path,
        {
            "generate": {"edge_cases": {"share": 0.5}},
            "train": {"batching": batching, "adversarial": {"method": "fgm", "on": "edge_cases"}},
        },
    )
    seen: list[torch.Tensor] = []
    original = trainer_module.SynthtuneTrainer._adversarial_step

    def spy(self, model, inputs, hook, num_items, edge=None):
        seen.append(edge)
        return original(self, model, inputs, hook, num_items, edge)

    monkeypatch.setattr(trainer_module.SynthtuneTrainer, "_adversarial_step", spy)
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="train", quiet=True)
    metrics = json.loads((result.run_dir / "train" / "metrics.json").read_text())
    losses = [h["loss"] for h in metrics["log_history"] if "loss" in h]
    assert losses and all(math.isfinite(x) for x in losses)
    assert seen and all(e is not None and e.any() for e in seen)  # no edge case: no pass
    assert any(not e.all() for e in seen)  # mixed batches: only their edge rows
