"""Quantize the exported model and measure it against fp32 in one run.

CPU int8 backends are registered by name and chosen by measurement on the machine at hand:
on the AVX2-only CPUs we develop on, torchao's int8 dynamic config ran 2-25x slower than fp32
while ``torch.ao.quantization.quantize_dynamic`` (fbgemm/x86 int8 GEMM) ran 2.3x faster, and
the ranking flips on CPUs with AMX/VNNI. bitsandbytes 8/4-bit needs CUDA.

The report (``export/quantize.json``): backend and why, p50/p95 latency of batch-1 greedy
generation of exactly ``new_tokens`` tokens, tokens/s, prefill latency, size on disk, and
perplexity on the real test split for fp32 and quantized with the relative change.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthtune.int8 import INT8_CPU, available_int8_backends
from synthtune.lazy import inference_mode
from synthtune.perplexity import PerplexityScorer

if TYPE_CHECKING:
    import torch


@inference_mode
def generate_exactly(model: Any, tokenizer: Any, prompt: str, new_tokens: int) -> float:
    """Seconds for one batch-1 greedy generation of exactly ``new_tokens`` tokens."""
    enc = tokenizer(prompt, return_tensors="pt").to(_device(model))
    started = time.perf_counter()
    model.generate(
        **enc,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,  # a fixed count, so EOS cannot make a model look fast
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    return time.perf_counter() - started


@inference_mode
def prefill_seconds(model: Any, tokenizer: Any, prompt: str) -> float:
    enc = tokenizer(prompt, return_tensors="pt").to(_device(model))
    started = time.perf_counter()
    model(**enc)
    return time.perf_counter() - started


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def measure_latency(
    model: Any, tokenizer: Any, prompts: Sequence[str], new_tokens: int
) -> dict[str, float]:
    """p50/p95 generation and prefill latency (ms) and tokens/s; one warm-up run first."""
    generate_exactly(model, tokenizer, prompts[0], 2)
    gen = [generate_exactly(model, tokenizer, p, new_tokens) for p in prompts]
    pre = [prefill_seconds(model, tokenizer, p) for p in prompts]
    return {
        "p50_ms": round(1000 * statistics.median(gen), 2),
        "p95_ms": round(1000 * percentile(gen, 0.95), 2),
        "prefill_p50_ms": round(1000 * statistics.median(pre), 3),
        "tokens_per_s": round(new_tokens * len(gen) / sum(gen), 2),
    }


def choose_int8_backend(
    model: Any, tokenizer: Any, prompt: str, new_tokens: int = 16
) -> tuple[str, Any, dict[str, float]]:
    """Quantize a copy of ``model`` with every installed backend and keep the fastest at
    batch-1 greedy generation. Returns (name, quantized model, ms per generation tried)."""
    return fastest_int8(model, lambda m: generate_exactly(m, tokenizer, prompt, new_tokens))


def fastest_int8(model: Any, workload: Callable[[Any], float]) -> tuple[str, Any, dict[str, float]]:
    """Quantize a copy of ``model`` with every installed backend, time ``workload`` (seconds
    it reports; best of 3 after a warm-up) on each and keep the fastest."""
    timings, best = {}, None
    for name in available_int8_backends():
        candidate = INT8_CPU.get(name)(copy.deepcopy(model)).eval()
        workload(candidate)  # warm-up
        seconds = min(workload(candidate) for _ in range(3))
        timings[name] = round(1000 * seconds, 2)
        if best is None or seconds < best[1]:
            best = (name, seconds, candidate)
    assert best is not None  # torch-ao-dynamic is always available
    return best[0], best[2], timings


def weights_bytes(folder: Path) -> int:
    """Bytes of a model folder's weights (``*.safetensors``; tokenizer and config left out)."""
    return sum(f.stat().st_size for f in folder.glob("*.safetensors"))


def save_int8_state(quantized: Any, tokenizer: Any, out_dir: Path) -> int:
    """Save a CPU int8 model as its state dict (+ tokenizer); returns the state dict's bytes.

    Quantized modules are not save_pretrained-able: loaders take the fp32 folder, apply the
    same backend, then ``load_state_dict(torch.load(...))``."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "int8_state_dict.pt"
    torch.save(quantized.state_dict(), path)
    tokenizer.save_pretrained(out_dir)
    return path.stat().st_size


def perplexity(model: Any, tokenizer: Any, texts: Sequence[str]) -> float:
    return PerplexityScorer(model, tokenizer, batch_size=8).corpus_perplexity(texts)


def quality_and_speed(
    model: Any, tokenizer: Any, texts: Sequence[str], prompts: Sequence[str], new_tokens: int
) -> dict[str, Any]:
    return {
        "perplexity": round(perplexity(model, tokenizer, texts), 4),
        "latency": measure_latency(model, tokenizer, prompts, new_tokens),
    }


def compare(fp32: dict[str, Any], quantized: dict[str, Any]) -> dict[str, float]:
    """Speed-ups (fp32 / quantized latency) and the perplexity change in %."""
    f, q = fp32["latency"], quantized["latency"]
    return {
        "generation_speedup": round(f["p50_ms"] / q["p50_ms"], 2),
        "prefill_speedup": round(f["prefill_p50_ms"] / q["prefill_p50_ms"], 2),
        "perplexity_change_pct": round(
            100 * (quantized["perplexity"] - fp32["perplexity"]) / fp32["perplexity"], 3
        ),
    }


def quantize_cpu_int8(
    model_dir: Path,
    out_dir: Path,
    texts: Sequence[str],
    prompts: Sequence[str],
    new_tokens: int,
) -> dict[str, Any]:
    """int8 on CPU: choose the backend, save the int8 state dict, measure both models."""
    import torch

    from synthtune.models import load_causal_lm

    model, tokenizer = load_causal_lm(str(model_dir), device=torch.device("cpu"), dtype="float32")
    fp32 = quality_and_speed(model, tokenizer, texts, prompts, new_tokens)
    backend, quantized, tried = choose_int8_backend(model, tokenizer, prompts[0])
    result = quality_and_speed(quantized, tokenizer, texts, prompts, new_tokens)
    result["size_bytes"] = save_int8_state(quantized, tokenizer, out_dir)
    fp32["size_bytes"] = weights_bytes(model_dir)
    return {
        "mode": "int8",
        "device": "cpu",
        "backend": backend,
        "backend_choice": {"ms_per_generation": tried, "rule": "fastest measured"},
        "fp32": fp32,
        "quantized": result,
        "comparison": compare(fp32, result),
        "path": str(out_dir),
    }


def quantize_bnb(
    mode: str,
    model_dir: Path,
    out_dir: Path,
    texts: Sequence[str],
    prompts: Sequence[str],
    new_tokens: int,
) -> dict[str, Any]:
    """bitsandbytes 8-bit (int8) or 4-bit NF4 on CUDA, against the fp32 model on the GPU."""
    import torch
    from transformers import BitsAndBytesConfig

    from synthtune.models import load_causal_lm

    bnb = (
        BitsAndBytesConfig(load_in_8bit=True)
        if mode == "int8"
        else BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16
        )
    )
    cuda = torch.device("cuda")
    model, tokenizer = load_causal_lm(str(model_dir), device=cuda, dtype="float32")
    fp32 = quality_and_speed(model, tokenizer, texts, prompts, new_tokens)
    fp32["size_bytes"] = weights_bytes(model_dir)
    del model
    quantized, _ = load_causal_lm(
        str(model_dir), device=cuda, quantization_config=bnb, device_map={"": 0}
    )
    result = quality_and_speed(quantized, tokenizer, texts, prompts, new_tokens)
    quantized.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    result["size_bytes"] = weights_bytes(out_dir)
    return {
        "mode": mode,
        "device": "cuda",
        "backend": f"bitsandbytes.{'8bit' if mode == 'int8' else 'nf4'}",
        "fp32": fp32,
        "quantized": result,
        "comparison": compare(fp32, result),
        "path": str(out_dir),
    }


def quantize_model(
    mode: str,
    model_dir: Path,
    out_dir: Path,
    texts: Sequence[str],
    prompts: Sequence[str],
    new_tokens: int,
    cuda: bool | None = None,
) -> dict[str, Any]:
    """Quantize ``model_dir`` per ``mode`` (int8 | nf4) and measure it; a skip is reported,
    not raised: nf4 without CUDA returns ``{"skipped": reason}``."""
    import torch

    cuda = torch.cuda.is_available() if cuda is None else cuda
    if cuda and importlib.util.find_spec("bitsandbytes") is not None:
        return quantize_bnb(mode, model_dir, out_dir, texts, prompts, new_tokens)
    if mode == "int8":
        return quantize_cpu_int8(model_dir, out_dir, texts, prompts, new_tokens)
    reason = (
        "export.quantize: nf4 needs bitsandbytes on a CUDA GPU "
        + ("(bitsandbytes is not installed)" if cuda else "(no CUDA device)")
        + "; skipped. Use quantize: int8 for CPU."
    )
    return {"mode": mode, "skipped": reason}
