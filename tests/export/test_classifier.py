"""Exporting a tuned classifier: the merge check compares against base+adapter *before* the
merge (merge_and_unload works in place), so a broken merge is caught; int8 is measured."""

from pathlib import Path

import pytest
import torch
from peft import LoraConfig, TaskType, get_peft_model

from synthtune.errors import StageError
from synthtune.export.classifier import merge_classifier, quantize_classifier_int8
from synthtune.models import load_sequence_classifier

LABELS = ["negative", "neutral", "positive"]
TEXTS = ["Shares plunge after a profit warning", "Shares soar on record profit", "Flat day"]


def _adapter(tiny_model_dir: Path, out: Path) -> None:
    """A LoRA classifier adapter with non-zero weights and its (modules_to_save) head."""
    torch.manual_seed(0)
    model, tokenizer = load_sequence_classifier(str(tiny_model_dir), LABELS)
    config = LoraConfig(
        task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8, init_lora_weights=False, lora_dropout=0.0
    )
    get_peft_model(model, config).save_pretrained(out)
    tokenizer.save_pretrained(out)


def test_merged_classifier_matches_base_plus_adapter_and_int8_is_measured(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    _adapter(tiny_model_dir, tmp_path / "adapter")
    merged = merge_classifier(
        str(tiny_model_dir), tmp_path / "adapter", LABELS, tmp_path / "model", TEXTS, 1e-4
    )
    assert merged["merged"] and 0 < merged["max_abs_logit_diff"] <= 1e-4
    model, _ = load_sequence_classifier(str(tmp_path / "model"), LABELS)
    assert model.config.id2label == dict(enumerate(LABELS))

    report = quantize_classifier_int8(
        tmp_path / "model", LABELS, tmp_path / "int8", TEXTS * 4, [0, 2, 1] * 4, timed=4
    )
    assert report["timed_texts"] == 4 and report["texts"] == 12
    assert report["quantized"]["size_bytes"] < report["fp32"]["size_bytes"]
    assert report["quantized"]["p95_ms"] >= report["quantized"]["p50_ms"] > 0
    assert set(report["comparison"]) == {
        "latency_speedup",
        "bulk_speedup",
        "accuracy_change",
        "macro_f1_change",
    }


def test_a_merge_beyond_the_tolerance_is_refused_and_nothing_is_written(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    _adapter(tiny_model_dir, tmp_path / "adapter")
    # the float-rounding difference (> 0, as the reference is taken before the in-place merge)
    # is above a tolerance of 1e-12
    with pytest.raises(StageError, match="merge_tolerance"):
        merge_classifier(
            str(tiny_model_dir), tmp_path / "adapter", LABELS, tmp_path / "m", TEXTS, 1e-12
        )
    assert not (tmp_path / "m").exists()
