"""int8 vs fp32 on CPU for a ~80M-parameter Llama built locally (issue 8).

Goal: >= 2x faster generation (batch 1, 64 new tokens), >= 1.4x faster prefill, perplexity
within 0.5 %. Every installed int8 backend is tried and the fastest kept (synthtune.export.
quantize.choose_int8_backend), so the numbers say which one this CPU prefers. The model is
pre-trained briefly on the medical-qa headlines, so its weights have a trained model's spread;
perplexity is measured on 200 held-out headlines.

    python bench/quantize.py [--new-tokens 64] [--prompts 8] [--pretrain-epochs 0.5]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from synthtune.config import LocalTinyConfig
from synthtune.export.quantize import choose_int8_backend, compare, quality_and_speed
from synthtune.models import build_local_tiny, load_causal_lm

REAL = Path(__file__).resolve().parents[1] / "examples" / "medical-qa" / "data" / "real.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--pretrain-epochs", type=float, default=0.5)
    args = parser.parse_args()
    texts = [json.loads(line)["text"] for line in REAL.read_text(encoding="utf-8").splitlines()]
    train, held_out = texts[:-200], texts[-200:]
    folder = Path(tempfile.mkdtemp()) / "bench-llama-80m"
    cfg = LocalTinyConfig(
        vocab_size=8000,
        hidden_size=768,
        layers=10,
        heads=12,
        pretrain_epochs=args.pretrain_epochs,
        max_length=64,
    )
    started = time.perf_counter()
    info = build_local_tiny(folder, texts, train, cfg, seed=0)
    print(
        f"model: {info['parameters'] / 1e6:.1f}M parameters, built in "
        f"{time.perf_counter() - started:.0f} s, torch threads {torch.get_num_threads()}, "
        f"quantized engine {torch.backends.quantized.engine}"
    )
    model, tokenizer = load_causal_lm(str(folder), device=torch.device("cpu"), dtype="float32")
    prompts = [f"<|user|>\n{t}\n<|assistant|>\n" for t in held_out[: args.prompts]]
    fp32 = quality_and_speed(model, tokenizer, held_out, prompts, args.new_tokens)
    backend, quantized, tried = choose_int8_backend(model, tokenizer, prompts[0])
    int8 = quality_and_speed(quantized, tokenizer, held_out, prompts, args.new_tokens)
    print(f"int8 backends tried (ms per 16-token generation): {tried}; chosen: {backend}")
    for name, result in (("fp32", fp32), (f"int8 ({backend})", int8)):
        lat = result["latency"]
        print(
            f"{name}: generation p50 {lat['p50_ms']} ms, p95 {lat['p95_ms']} ms, "
            f"{lat['tokens_per_s']} tokens/s, prefill p50 {lat['prefill_p50_ms']} ms, "
            f"perplexity {result['perplexity']}"
        )
    print(json.dumps(compare(fp32, int8)))


if __name__ == "__main__":
    main()
