"""train.synthetic_weight (synthetic rows weigh less in the loss) and train.lm_format."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from synthtune.train.data import LOSS_WEIGHT, NoisyCollator, PackedCollator, as_plain_text
from synthtune.train.tasks import ClassificationCollator
from synthtune.train.trainer import weighted_loss
from tests.train.conftest import step_grads


def test_weighted_loss_of_a_classifier_is_the_weighted_mean_of_example_losses() -> None:
    torch.manual_seed(0)
    logits, labels = torch.randn(3, 4), torch.tensor([0, 2, 3])
    each = F.cross_entropy(logits, labels, reduction="none")
    ones = weighted_loss(logits, labels, torch.ones(3))
    torch.testing.assert_close(ones, F.cross_entropy(logits, labels))
    weights = torch.tensor([1.0, 0.25, 0.0])
    expected = (each[0] + 0.25 * each[1]) / 1.25
    torch.testing.assert_close(weighted_loss(logits, labels, weights), expected)


def test_weighted_loss_of_a_causal_lm_weighs_learned_tokens() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 7)
    labels = torch.tensor([[-100, 1, 2, 3, 4], [-100, -100, 5, 6, -100]])
    # weights 1: the usual mean over every learned (shifted, not -100) token
    usual = F.cross_entropy(logits[:, :-1].reshape(-1, 7), labels[:, 1:].reshape(-1))
    torch.testing.assert_close(weighted_loss(logits, labels, torch.ones(2)), usual)
    # weight 0 on the second row: the first row's own mean
    first = F.cross_entropy(logits[0, :-1], labels[0, 1:])
    torch.testing.assert_close(weighted_loss(logits, labels, torch.tensor([1.0, 0.0])), first)
    # per-token weights (a packed row) equal per-row weights spread over the row's tokens
    per_token = torch.tensor([[0.5] * 5, [2.0] * 5])
    torch.testing.assert_close(
        weighted_loss(logits, labels, per_token),
        weighted_loss(logits, labels, torch.tensor([0.5, 2.0])),
    )


def _grads(setup, rows: list[list[int]], weights: list[float] | None) -> torch.Tensor:
    extra = None if weights is None else {LOSS_WEIGHT: torch.tensor(weights)}
    return step_grads(setup, rows, extra)


def test_a_weighted_step_learns_in_proportion_to_the_weights(setup) -> None:
    _, tokenizer, _ = setup
    texts = ["Patient 1 reports a temperature of 38.5 °C.", "Patient 2 reports a cold cough."]
    rows = [tokenizer(t)["input_ids"] for t in texts]
    width = min(len(r) for r in rows)
    real, synthetic = (r[:width] for r in rows)
    # weights of 1 reproduce the Trainer's own loss ...
    torch.testing.assert_close(
        _grads(setup, [real, synthetic], [1.0, 1.0]),
        _grads(setup, [real, synthetic], None),
        rtol=1e-4,
        atol=1e-7,
    )
    # ... weight 0 removes the row ...
    torch.testing.assert_close(
        _grads(setup, [real, synthetic], [1.0, 0.0]), _grads(setup, [real], None)
    )
    # ... and 0.25 gives the weighted mean of the two rows' gradients
    alone = [_grads(setup, [row], None) for row in (real, synthetic)]
    torch.testing.assert_close(
        _grads(setup, [real, synthetic], [1.0, 0.25]),
        (alone[0] + 0.25 * alone[1]) / 1.25,
        rtol=1e-4,
        atol=1e-7,
    )


def test_collators_carry_weights_per_row_or_per_token(setup) -> None:
    _, tokenizer, _ = setup
    features = [
        {"input_ids": [5, 6, 7], "labels": [5, 6, 7], LOSS_WEIGHT: 0.5},
        {"input_ids": [8, 9], "labels": [8, 9], LOSS_WEIGHT: 1.0},
    ]
    assert NoisyCollator(tokenizer, 0, 0, seed=0)(features)[LOSS_WEIGHT].tolist() == [0.5, 1.0]
    packed = PackedCollator(tokenizer, 0, 0, seed=0)(features)
    assert packed[LOSS_WEIGHT].tolist() == [[0.5, 0.5, 0.5, 1.0, 1.0]]
    classes = ClassificationCollator(tokenizer, 0, 0, seed=0)(
        [
            {"input_ids": [5], "labels": 1, LOSS_WEIGHT: 0.5},
            {"input_ids": [7], "labels": 0, LOSS_WEIGHT: 1.0},
        ]
    )
    assert classes[LOSS_WEIGHT].tolist() == [0.5, 1.0] and classes["labels"].tolist() == [1, 0]


def test_train_stage_weighs_synthetic_records_only(tmp_path: Path, monkeypatch) -> None:
    from synthtune.config import load_recipe
    from synthtune.pipeline import run_recipe
    from synthtune.train import trainer as trainer_module
    from tests.conftest import write_recipe

    recipe = write_recipe(tmp_path, {"train": {"synthetic_weight": 0.25}})
    seen: list[float] = []
    original = trainer_module.weighted_loss

    def spy(logits, labels, weights):
        seen.extend(weights.flatten().tolist())
        return original(logits, labels, weights)

    monkeypatch.setattr(trainer_module, "weighted_loss", spy)
    result = run_recipe(load_recipe(recipe), tmp_path / "runs", until="train", quiet=True)
    assert set(seen) == {0.25, 1.0}  # both sources met in training, each with its weight
    assert (result.run_dir / "train" / "adapter").is_dir()


def test_a_late_field_at_its_default_leaves_the_fingerprints_unchanged(tmp_path: Path) -> None:
    from synthtune.config import load_recipe
    from synthtune.config.base import fingerprint_dump
    from synthtune.pipeline import fingerprints
    from tests.conftest import write_recipe

    plain = load_recipe(write_recipe(tmp_path))
    dump = fingerprint_dump(plain)
    assert "synthetic_weight" not in dump["train"] and "lm_format" not in dump["train"]
    full = plain.model_dump(mode="json")["train"]
    assert full == {
        **dump["train"],
        "synthetic_weight": 1.0,
        "lm_format": "chat",
        "audio": full["audio"],  # issue 24's section, also left out at its default
    }
    weighted = load_recipe(write_recipe(tmp_path, {"train": {"synthetic_weight": 0.5}}))
    assert fingerprint_dump(weighted)["train"]["synthetic_weight"] == 0.5
    before, after = fingerprints(plain, tmp_path), fingerprints(weighted, tmp_path)
    assert [s for s in before if before[s] != after[s]] == ["train", "export", "evaluate"]


def test_lm_format_text_learns_every_reply_as_plain_text(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    from synthtune.records import Message, Payload, Record
    from synthtune.train.data import encode_record

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    chat = Record.create(
        "synthetic",
        Payload(
            messages=[
                Message(role="user", content="Write a tweet for the bbchealth desk."),
                Message(role="assistant", content="Flu cases falling"),
            ]
        ),
    )
    text = as_plain_text(chat)
    assert [m.model_dump() for m in text.payload.messages] == [
        {"role": "assistant", "content": "Flu cases falling"}
    ]
    assert text.source == "synthetic" and as_plain_text(text) is text
    encoded = encode_record(tokenizer, text, 64)
    assert -100 not in encoded["labels"] and encoded["labels"] == encoded["input_ids"]
    assert -100 in encode_record(tokenizer, chat, 64)["labels"]


def test_lm_format_text_is_refused_for_a_classifier() -> None:
    from pydantic import ValidationError

    from synthtune.config import TrainConfig

    with pytest.raises(ValidationError, match=r"lm_format text applies to train\.task causal_lm"):
        TrainConfig(task="classification", lm_format="text")
