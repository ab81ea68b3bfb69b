"""Classification suite: accuracy and macro-F1 (scikit-learn) of base vs tuned on the test
split. The base is the pre-trained model with a fresh, seeded head: the chance-level reference
the tuned model must beat."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, f1_score

from synthtune.models import load_sequence_classifier
from synthtune.records import Record


@torch.inference_mode()
def predict(model: Any, tokenizer: Any, texts: list[str], batch_size: int = 32) -> np.ndarray:
    model.eval()
    tokenizer.padding_side = "right"
    out = []
    for start in range(0, len(texts), batch_size):
        enc = tokenizer(
            texts[start : start + batch_size],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=256,
        )
        out.append(model(**enc).logits.argmax(dim=-1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=int)


def scores(truth: list[int], predicted: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": round(float(accuracy_score(truth, predicted)), 4),
        "macro_f1": round(float(f1_score(truth, predicted, average="macro")), 4),
    }


def evaluate_classification(
    test: list[Record], base_path: str, tuned_dir: Path, labels: list[str], seed: int
) -> dict[str, Any]:
    ids = {label: i for i, label in enumerate(labels)}
    usable = [r for r in test if r.payload.label in ids]
    texts = [r.payload.input_text() for r in usable]
    truth = [ids[r.payload.label] for r in usable]  # type: ignore[index]
    torch.manual_seed(seed)
    base, tokenizer = load_sequence_classifier(base_path, labels)
    result = {"n": len(usable), "base": scores(truth, predict(base, tokenizer, texts))}
    if (tuned_dir / "adapter_config.json").exists():
        from peft import PeftModel

        torch.manual_seed(seed)
        fresh, tokenizer = load_sequence_classifier(base_path, labels)
        tuned = PeftModel.from_pretrained(fresh, str(tuned_dir))
    else:
        tuned, tokenizer = load_sequence_classifier(str(tuned_dir), labels)
    result["tuned"] = scores(truth, predict(tuned, tokenizer, texts))
    return result
