"""Perplexity scoring: length-sorted batches vs unsorted padded batches vs a per-record loop.

Same model (a ~20M-parameter Llama built locally), same texts, measured side by side in one
run; scores must agree within 1e-5. Throughput is also given as a fraction of this machine's
measured fp32 matmul peak (model FLOPs ~ 2 x non-embedding parameters per token + the LM head).

    python bench/perplexity_batching.py [--texts 256]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from synthtune.config import LocalTinyConfig
from synthtune.models import build_local_tiny, load_causal_lm
from synthtune.perplexity import PerplexityScorer
from synthtune.train.estimate import matmul_peak_gflops


class Unsorted(PerplexityScorer):
    """Batches in input order (what a naive batched scorer does)."""

    def nll(self, texts, progress=None):  # type: ignore[no-untyped-def]
        segments = [s for i, t in enumerate(texts) for s in self._segments(i, self._encode(t))]
        out = [(0.0, 0)] * len(texts)
        for start in range(0, len(segments), self.batch_size):
            chunk = segments[start : start + self.batch_size]
            for seg, value in zip(chunk, self._batch_nll(chunk), strict=True):
                out[seg.text] = value
        return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--texts", type=int, default=256)
    args = parser.parse_args()
    rng = random.Random(0)
    words = ["patient", "fever", "cough", "rest", "fluids", "doctor", "temperature", "pain"]
    texts = [" ".join(rng.choices(words, k=rng.randint(8, 120))) for _ in range(args.texts)]
    folder = Path(tempfile.mkdtemp()) / "ppl-llama"
    cfg = LocalTinyConfig(vocab_size=8000, hidden_size=512, layers=6, heads=8, pretrain_epochs=0)
    info = build_local_tiny(folder, texts * 4, [], cfg, seed=0)
    model, tokenizer = load_causal_lm(str(folder), dtype="float32")
    tokens = sum(len(tokenizer(t)["input_ids"]) + 1 for t in texts)
    body = info["parameters"] - model.get_input_embeddings().weight.numel()
    flops_per_token = 2 * (body + model.get_input_embeddings().weight.numel())
    peak = matmul_peak_gflops(repeats=20)
    runs = {}
    for name, scorer in (
        ("per-record loop", PerplexityScorer(model, tokenizer, batch_size=1, max_length=512)),
        ("unsorted batches of 16", Unsorted(model, tokenizer, batch_size=16, max_length=512)),
        ("length-sorted batches of 16", PerplexityScorer(model, tokenizer, 16, 512)),
    ):
        started = time.perf_counter()
        runs[name] = (scorer.score(texts), time.perf_counter() - started)
    reference, t_loop = runs["per-record loop"]
    print(
        f"model {info['parameters'] / 1e6:.1f}M, {len(texts)} texts, {tokens} tokens, "
        f"fp32 matmul peak {peak:.0f} GFLOP/s"
    )
    for name, (scores, seconds) in runs.items():
        diff = max(abs(a - b) / b for a, b in zip(scores, reference, strict=True))
        rate = tokens / seconds
        print(
            f"{name}: {rate:,.0f} tok/s, {t_loop / seconds:.2f}x the loop, "
            f"{rate * flops_per_token / 1e9 / peak:.0%} of peak, max rel diff {diff:.1e}"
        )


if __name__ == "__main__":
    main()
