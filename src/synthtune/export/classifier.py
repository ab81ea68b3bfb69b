"""Export a tuned sequence classifier: one folder, proven equal to base+adapter, and int8.

The classification twin of ``merge.py`` + ``quantize.py``: a LoRA adapter (with the head it
trained, saved by peft as ``modules_to_save``) is folded into the base with
``merge_and_unload`` and the merged logits are compared with base+adapter in fp32; the int8
model is measured against fp32 in one run: batch-1 latency p50/p95 (what one request costs),
texts/s at batch 32 (what a bulk job gets), size on disk, accuracy and macro-F1 on the test split.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synthtune.classify import class_logits, predict, scores
from synthtune.export.merge import check_merge, save_model_folder
from synthtune.export.quantize import fastest_int8, percentile, save_int8_state, weights_bytes
from synthtune.models import load_sequence_classifier, load_tuned_classifier


def merge_classifier(
    base_path: str,
    tuned_dir: Path,
    labels: list[str],
    out_dir: Path,
    texts: Sequence[str],
    tolerance: float,
) -> dict[str, Any]:
    """Save the tuned classifier as one model folder after checking the merged logits equal
    base+adapter's within ``tolerance`` (batch 1, fp32). Raises ``StageError`` otherwise."""
    model, tokenizer = load_tuned_classifier(base_path, tuned_dir, labels)
    is_adapter = hasattr(model, "merge_and_unload")
    diff = 0.0
    if is_adapter:
        # reference first: merge_and_unload folds the adapter into these same modules in place
        reference = class_logits(model, tokenizer, texts, batch_size=1)
        merged = model.merge_and_unload()
        diff = float((reference - class_logits(merged, tokenizer, texts, batch_size=1)).abs().max())
        scale = float(abs(reference).max())
        check_merge(diff, tolerance, "classifier", f"{len(texts)} texts", tuned_dir, scale)
    else:
        merged = model
    save_model_folder(merged, tokenizer, out_dir)
    return {
        "merged": is_adapter,
        "texts": len(texts),
        "max_abs_logit_diff": diff,
        "tolerance": tolerance,
        "path": str(out_dir),
    }


def _classify_one(model: Any, tokenizer: Any, text: str) -> float:
    started = time.perf_counter()
    class_logits(model, tokenizer, [text], batch_size=1)
    return time.perf_counter() - started


def speed(model: Any, tokenizer: Any, texts: Sequence[str], timed: int) -> dict[str, float]:
    """Batch-1 latency p50/p95 (ms) over the first ``timed`` texts and bulk texts/s at
    batch 32 over all of them."""
    _classify_one(model, tokenizer, texts[0])  # warm-up
    one = [_classify_one(model, tokenizer, t) for t in texts[:timed]]
    started = time.perf_counter()
    class_logits(model, tokenizer, texts, batch_size=32)
    bulk = time.perf_counter() - started
    return {
        "p50_ms": round(1000 * statistics.median(one), 3),
        "p95_ms": round(1000 * percentile(one, 0.95), 3),
        "texts_per_s_batch32": round(len(texts) / bulk, 1),
    }


def quantize_classifier_int8(
    model_dir: Path,
    labels: list[str],
    out_dir: Path,
    texts: Sequence[str],
    truth: Sequence[int],
    timed: int,
) -> dict[str, Any]:
    """int8 (backend chosen by measured batch-1 latency) vs fp32: speed (batch-1 latency
    over ``timed`` texts, bulk over all), size, accuracy and macro-F1 over ``texts``."""
    if not texts:
        return {"mode": "int8", "skipped": "no labelled test records to measure on"}
    model, tokenizer = load_sequence_classifier(str(model_dir), labels)
    model.eval()

    def measured(m: Any) -> dict[str, Any]:
        return {**speed(m, tokenizer, texts, timed), **scores(truth, predict(m, tokenizer, texts))}

    fp32 = measured(model)
    backend, quantized, tried = fastest_int8(model, lambda m: _classify_one(m, tokenizer, texts[0]))
    result = measured(quantized)
    result["size_bytes"] = save_int8_state(quantized, tokenizer, out_dir)
    fp32["size_bytes"] = weights_bytes(model_dir)
    return {
        "task": "classification",
        "mode": "int8",
        "device": "cpu",
        "backend": backend,
        "backend_choice": {"ms_per_text": tried, "rule": "fastest measured"},
        "fp32": fp32,
        "quantized": result,
        "comparison": {
            "latency_speedup": round(fp32["p50_ms"] / result["p50_ms"], 2),
            "bulk_speedup": round(result["texts_per_s_batch32"] / fp32["texts_per_s_batch32"], 2),
            "accuracy_change": round(result["accuracy"] - fp32["accuracy"], 4),
            "macro_f1_change": round(result["macro_f1"] - fp32["macro_f1"], 4),
        },
        "path": str(out_dir),
        "texts": len(texts),
        "timed_texts": min(timed, len(texts)),
    }
