"""Estimate a training run before starting it: parameters, memory, throughput.

Memory (bytes), for AdamW without gradient checkpointing:

* weights: every parameter at its dtype (4 bytes fp32 on CPU, 2 bytes bf16 on GPU);
* gradients: 4 bytes per trainable parameter; optimizer: 8 (two fp32 moments);
* activations kept for the backward pass, per transformer layer, from Korthikanti et al.
  (2022, "Reducing activation recomputation", eq. 1): ``s*b*h*(34 + 5*a*s/h)`` bytes at
  16-bit (``32 + 4*a*s/h`` without dropout), doubled for fp32; plus, for a causal LM, the
  logits, their log-softmax and its gradient, ``3*s*b*V*4`` (a classifier's logits are one
  row of class scores per example, negligible). Gradients are counted whole although the
  backward pass frees activations as they grow, so full fine-tuning is over-estimated a little
  (measured: +18 %; LoRA within 1 %).

The estimate is of tensor memory (what PyTorch allocates), the quantity the test compares with
the profiler's allocation peak; a process's RSS adds the allocator's cached blocks on top.

Throughput: ``6*P`` FLOPs per token for full fine-tuning and ``4*P + 2*T`` with frozen base
weights (forward 2P, input gradients 2P, weight gradients 2T), at half of this machine's
measured fp32 matmul peak (bench/perplexity_batching.py reaches 40-70 %).
"""

from __future__ import annotations

import time
from typing import Any

from synthtune.config import TrainConfig


def matmul_peak_gflops(size: int = 1024, repeats: int = 10, trials: int = 1) -> float:
    """fp32 GFLOP/s of a square matmul on this machine (the best of ``trials``)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)
    best = 0.0
    for _ in range(trials):
        started = time.perf_counter()
        for _ in range(repeats):
            torch.matmul(a, b)
        best = max(best, 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9)
    return best


def flops_per_token(model: Any) -> int:
    """Model FLOPs per trained token: ``6 * P`` when every parameter trains, ``4 * P + 2 * T``
    with frozen base weights (module docstring), P counting tied weights once."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return 6 * total if trainable == total else 4 * total + 2 * trainable


def utilisation(model: Any, tokens_per_second: float | None) -> dict[str, Any]:
    """Model-FLOPs utilisation of a training run: FLOPs per token x tokens/s over the
    training steps, against this machine's fp32 matmul peak measured now (best of three;
    on a GPU the figures describe the CPU and are left out)."""
    import torch

    if not tokens_per_second or torch.cuda.is_available():
        return {}
    per_token = flops_per_token(model)
    peak = matmul_peak_gflops(trials=3)
    return {
        "flops_per_token": per_token,
        "matmul_peak_gflops": round(peak, 1),
        "mfu": round(per_token * tokens_per_second / (peak * 1e9), 3),
    }


def count_trainable(config: Any, cfg: TrainConfig) -> tuple[int, int]:
    """(all, trainable) parameters once the method is applied to the model ``cfg.task``
    trains (causal LM or sequence classifier), on empty (meta) weights."""
    from accelerate import init_empty_weights

    from synthtune.train.advisor import untied_duplicate
    from synthtune.train.methods import METHODS, empty_task_model
    from synthtune.train.param_groups import apply_freezing

    base = empty_task_model(config, cfg.task)
    duplicate = untied_duplicate(base)
    with init_empty_weights():
        model = METHODS.get(cfg.method).prepare(base, cfg)
        apply_freezing(model, cfg)
    total = sum(p.numel() for p in model.parameters()) - duplicate
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    head = base.get_output_embeddings()
    if duplicate and head is not None and head.weight.requires_grad:
        trainable -= duplicate  # the untied copy of a tied, trainable head
    return total, trainable


def estimate_run(config: Any, cfg: TrainConfig, seq_len: int, cuda: bool = False) -> dict[str, Any]:
    """Parameters, memory (bytes per part) and expected tokens/s of ``cfg`` on a base with
    ``config`` (module docstring). Raises ``StageError`` for a method that cannot run."""
    from synthtune.errors import StageError
    from synthtune.train.methods import method_problem

    if cfg.task == "clip":
        raise StageError("train --estimate: train.task clip is not estimated (CLIP towers)")
    if problem := method_problem(config, cfg):
        raise StageError(problem)
    total, trainable = count_trainable(config, cfg)
    b, s = cfg.batch_size, seq_len
    h, layers = config.hidden_size, config.num_hidden_layers
    heads, vocab = config.num_attention_heads, config.vocab_size
    # Without dropout (Llama-style models) there are no dropout masks to keep: Korthikanti's
    # 34 becomes 32 (two sbh one-byte masks gone) and 5as/h becomes 4as/h (no attention mask).
    dropout = any(
        float(getattr(config, name, 0) or 0) > 0
        for name in ("attention_dropout", "hidden_dropout", "hidden_dropout_prob", "resid_pdrop")
    )
    constant, attention = (34, 5) if dropout else (32, 4)
    lm_head = cfg.task == "causal_lm"
    per_layer = s * b * h * (constant + attention * heads * s / h) * (1 if cuda else 2)
    memory = {
        "weights": total * (2 if cuda else 4),
        "gradients": trainable * 4,
        "optimizer": trainable * 8,
        "activations": layers * per_layer + (3 * s * b * vocab * 4 if lm_head else 0),
    }
    flops_per_token = 6 * total if trainable == total else 4 * total + 2 * trainable
    peak = matmul_peak_gflops() * 1e9
    return {
        "parameters": total,
        "trainable": trainable,
        "memory_bytes": {k: int(v) for k, v in memory.items()},
        "memory_total_bytes": int(sum(memory.values())),
        "flops_per_token": int(flops_per_token),
        "matmul_peak_gflops": round(peak / 1e9, 1),
        "expected_tokens_per_second": round(0.5 * peak / flops_per_token, 1),
    }
