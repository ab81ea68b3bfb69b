"""`train --estimate` against what PyTorch really allocates (profiler, CPU)."""

from pathlib import Path

import pytest
import torch
from torch.profiler import ProfilerActivity, profile
from typer.testing import CliRunner

from synthtune.cli import app
from synthtune.config import LocalTinyConfig, TrainConfig
from synthtune.models import build_local_tiny, load_causal_lm
from synthtune.train.estimate import estimate_run
from synthtune.train.methods import METHODS
from synthtune.train.param_groups import apply_freezing, param_groups


def measured_bytes(folder: Path, cfg: TrainConfig, seq: int) -> int:
    """Weights + optimizer state + gradients + the allocation peak of one training step."""
    model, tokenizer = load_causal_lm(str(folder), dtype="float32")
    model.train()
    model = METHODS.get(cfg.method).prepare(model, cfg)
    apply_freezing(model, cfg)
    optimizer = torch.optim.AdamW(param_groups(model, cfg))
    ids = torch.randint(10, len(tokenizer), (cfg.batch_size, seq))

    def step() -> None:
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # optimizer state now exists
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    current = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        current += event.self_cpu_memory_usage
        peak = max(peak, current)
    unique = {id(p): p for p in model.parameters()}.values()
    trainable = sum(p.numel() for p in unique if p.requires_grad)
    weights = sum(p.numel() * 4 for p in unique)
    return weights + trainable * 8 + peak  # peak includes the gradients of the step


@pytest.mark.parametrize("method", ["lora", "full"])
def test_memory_estimate_is_within_25_percent_of_the_measured_peak(tmp_path, method) -> None:
    texts = [" ".join(f"w{(i * 7 + j) % 3000}" for j in range(60)) for i in range(300)]
    cfg = LocalTinyConfig(vocab_size=4000, hidden_size=256, layers=4, heads=4, pretrain_epochs=0)
    build_local_tiny(tmp_path / "m", texts, [], cfg, seed=0)
    train = TrainConfig(method=method, batch_size=8)
    model, _ = load_causal_lm(str(tmp_path / "m"), dtype="float32")
    estimate = estimate_run(model.config, train, seq_len=128)["memory_total_bytes"]
    measured = measured_bytes(tmp_path / "m", train, 128)
    print(f"{method}: estimated {estimate / 2**20:.0f} MiB, measured {measured / 2**20:.0f} MiB")
    assert abs(estimate - measured) / measured < 0.25


def test_cli_estimate_prints_the_table(small_recipe: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", str(small_recipe), "--estimate", "--out", str(tmp_path / "runs")]
    )
    assert result.exit_code == 0, result.output
    for row in ("parameters", "memory: activations", "expected throughput"):
        assert row in result.output
    assert not (tmp_path / "runs").exists()


def test_a_classifier_is_estimated_as_the_classifier_it_trains() -> None:
    """MiniLM as a 2-class classifier: the parameters of BertForSequenceClassification (not
    a causal LM with a vocabulary head), and no vocabulary-sized logits in activations."""
    from transformers import AutoConfig

    from synthtune.errors import StageError
    from synthtune.model_names import resolve_name
    from synthtune.models import load_sequence_classifier

    path = resolve_name("all-MiniLM-L6-v2")
    model, _ = load_sequence_classifier(path, ["a", "b"])
    real = sum(p.numel() for p in model.parameters())
    norms = sum(p.numel() for n, p in model.named_parameters() if "LayerNorm" in n)
    config = AutoConfig.from_pretrained(path)
    full = estimate_run(config, TrainConfig(task="classification", method="full"), 128)
    # full fine-tuning trains every weight but the norms (train.freeze.layernorm)
    assert full["parameters"] == real and full["trainable"] == real - norms
    as_lm = estimate_run(config, TrainConfig(task="causal_lm", method="full"), 128)
    logits = 3 * 128 * 8 * config.vocab_size * 4
    activations = as_lm["memory_bytes"]["activations"] - full["memory_bytes"]["activations"]
    assert activations == logits
    with pytest.raises(StageError, match=r"train\.method: prefix cannot run here"):
        estimate_run(config, TrainConfig(task="classification", method="prefix"), 128)
