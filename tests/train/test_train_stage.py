"""The train stage on the small recipe: LoRA only trains adapters, at the adapter LR."""

import json
from pathlib import Path

import pytest
import torch

from synthtune.config import TrainConfig, load_recipe
from synthtune.models import load_tokenizer
from synthtune.pipeline import run_recipe
from synthtune.records import Message, Payload, Record
from synthtune.train.data import NoisyCollator, encode_record
from synthtune.train.methods import METHODS
from synthtune.train.param_groups import apply_freezing, param_groups


def test_lora_trains_adapters_only_with_layered_lrs(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    cfg = TrainConfig(method="full")
    full = METHODS.get("full").prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    apply_freezing(full, cfg)
    names = [n for n, p in full.named_parameters() if p.requires_grad]
    assert names and not any("norm" in n for n in names)  # norms frozen by default
    assert {g["lr"] for g in param_groups(full, cfg)} == {1e-5}

    cfg = TrainConfig()
    lora = METHODS.get("lora").prepare(AutoModelForCausalLM.from_pretrained(tiny_model_dir), cfg)
    apply_freezing(lora, cfg)
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert any("q_proj" in n for n in trainable) and not any("mlp" in n for n in trainable)
    assert {g["lr"] for g in param_groups(lora, cfg)} == {1e-3}


def test_prompt_tokens_are_masked_and_noise_never_touches_labels(tiny_model_dir: Path) -> None:
    tokenizer = load_tokenizer(str(tiny_model_dir))
    record = Record.create(
        "synthetic",
        Payload(
            messages=[
                Message(role="user", content="Temperature 37.5 °C?"),
                Message(role="assistant", content="Rest and drink fluids."),
            ]
        ),
    )
    row = encode_record(tokenizer, record, 128)
    masked = sum(label == -100 for label in row["labels"])
    assert 0 < masked < len(row["labels"])
    assert row["input_ids"][-1] == tokenizer.eos_token_id  # the model learns to stop
    collator = NoisyCollator(tokenizer, noise_prob=1.0, token_rate=0.5, seed=0)
    # a masked prompt gets text-level noise upstream, not token noise here
    assert torch.equal(collator([row])["input_ids"][0], torch.tensor(row["input_ids"]))
    plain = {"input_ids": row["input_ids"], "labels": list(row["input_ids"])}
    batch = collator([plain, plain])
    assert torch.equal(batch["labels"][0], torch.tensor(plain["labels"]))
    assert not torch.equal(batch["input_ids"][0], torch.tensor(plain["input_ids"]))
    collator.training = False
    assert torch.equal(collator([plain])["input_ids"][0], torch.tensor(plain["input_ids"]))


def test_train_and_evaluate_stages_write_their_results(small_recipe: Path, tmp_path: Path) -> None:
    result = run_recipe(load_recipe(small_recipe), tmp_path / "runs", until="evaluate", quiet=True)
    run_dir = result.run_dir
    assert (run_dir / "train" / "adapter" / "adapter_config.json").exists()
    metrics = json.loads((run_dir / "train" / "metrics.json").read_text())
    assert metrics["global_step"] > 0 and any("eval_loss" in h for h in metrics["log_history"])
    evaluation = json.loads((run_dir / "evaluate" / "metrics.json").read_text())
    ppl = evaluation["suites"]["perplexity"]
    assert ppl["base"] > 1 and ppl["tuned"] > 1 and evaluation["n_test"] > 0
    again = run_recipe(
        load_recipe(small_recipe),
        tmp_path / "runs",
        from_stage="train",
        until="evaluate",
        quiet=True,
    )
    # export runs between train and evaluate (evaluate measures its quantized model)
    assert [o.status for o in again.outcomes] == [
        "skipped",
        "skipped",
        "skipped",
        "ran",
        "ran",
        "ran",
    ]


def test_packed_batches_keep_example_boundaries(chatty_model_dir: Path) -> None:
    """The packed row's loss equals the token-weighted loss of the examples run alone."""
    from transformers import AutoModelForCausalLM

    from synthtune.train.data import PackedCollator

    model = AutoModelForCausalLM.from_pretrained(chatty_model_dir).eval()
    tokenizer = load_tokenizer(str(chatty_model_dir))
    rows = []
    for text in ("Patient 1 has 37.5 °C.", "Rest, drink water and check again.", "Cough."):
        ids = tokenizer(text)["input_ids"]
        rows.append({"input_ids": ids, "labels": list(ids)})
    packed = PackedCollator(tokenizer, 0.0, 0.0, 0)(rows)
    assert packed["input_ids"].shape[0] == 1 and "attention_mask" not in packed
    with torch.no_grad():
        packed_loss = model(**packed).loss.item()
        total, count = 0.0, 0
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            n = ids.shape[1] - 1
            total += model(input_ids=ids, labels=ids).loss.item() * n
            count += n
    assert abs(packed_loss - total / count) < 1e-4


def test_packed_training_learns_what_grouped_batches_learn(tmp_path: Path) -> None:
    """Same data, steps and seed: packing changes how examples share a row, not what the
    model learns, so the validation loss matches grouped batches (measured: 5.5199 packed vs
    5.5201 grouped after 21 steps)."""
    from tests.conftest import write_recipe

    losses = {}
    for batching in ("packed", "grouped"):
        folder = tmp_path / batching
        folder.mkdir()
        recipe = write_recipe(folder, {"train": {"batching": batching}})
        result = run_recipe(load_recipe(recipe), folder / "runs", until="train", quiet=True)
        metrics = json.loads((result.run_dir / "train" / "metrics.json").read_text())
        assert metrics["global_step"] == 21
        losses[batching] = metrics["best_eval_loss"]
    assert losses["packed"] == pytest.approx(losses["grouped"], rel=0.01)
    assert losses["packed"] == pytest.approx(5.52, abs=0.3)


def test_tensorboard_events_are_written(small_recipe: Path, tmp_path: Path) -> None:
    result = run_recipe(load_recipe(small_recipe), tmp_path / "runs", until="train", quiet=True)
    events = list((result.run_dir / "train" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert "train/loss" in tags and "eval/loss" in tags


def test_frozen_heap_hides_older_objects_from_the_collector_while_training() -> None:
    import gc

    from synthtune.train.stage import frozen_heap

    assert gc.get_freeze_count() == 0
    with frozen_heap():
        assert gc.get_freeze_count() > 0  # what was alive is frozen
    assert gc.get_freeze_count() == 0  # and back under the collector after
    with pytest.raises(RuntimeError), frozen_heap():
        raise RuntimeError("a failed run")
    assert gc.get_freeze_count() == 0
    gc.freeze()  # a caller's own freeze is left alone: not unfrozen on the way out
    try:
        with frozen_heap():
            pass
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
