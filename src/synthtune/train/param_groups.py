"""Layered learning rates and freezing, applied the same way for every method.

Adapter parameters (LoRA, prompt/prefix encoders, ``modules_to_save``) learn at
``lr.adapter``; base weights that still train learn at ``lr.base``. Norm weights are frozen
when ``freeze.layernorm`` is set, and the first N transformer blocks when
``freeze.first_n_layers`` is set.
"""

from __future__ import annotations

import re
from typing import Any

from synthtune.config import TrainConfig

_ADAPTER = re.compile(r"lora_|prompt_encoder|prefix|modules_to_save|ia3_")
_NORM = re.compile(r"norm|ln_|layernorm", re.IGNORECASE)
_BLOCK = re.compile(r"\.(?:layers|h|layer|blocks)\.(\d+)\.")


def is_adapter(name: str) -> bool:
    return bool(_ADAPTER.search(name))


def apply_freezing(model: Any, cfg: TrainConfig) -> None:
    for name, param in model.named_parameters():
        if is_adapter(name):
            continue
        if cfg.freeze.layernorm and _NORM.search(name):
            param.requires_grad = False
        block = _BLOCK.search(name)
        if block and int(block.group(1)) < cfg.freeze.first_n_layers:
            param.requires_grad = False


def param_groups(model: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: adapter and base, each split into decayed and not (biases, norms)."""
    groups: dict[tuple[str, bool], list[Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        kind = "adapter" if is_adapter(name) else "base"
        decay = param.ndim >= 2
        groups.setdefault((kind, decay), []).append(param)
    lrs = {"adapter": cfg.lr.adapter, "base": cfg.lr.base}
    return [
        {"params": params, "lr": lrs[kind], "weight_decay": 0.01 if decay else 0.0, "name": kind}
        for (kind, decay), params in sorted(groups.items())
    ]


def group_table(model: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """One row per group for the start-of-training table: name, parameter count, LR."""
    counts: dict[str, int] = {"adapter": 0, "base": 0, "frozen": 0}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            counts["frozen"] += param.numel()
        else:
            counts["adapter" if is_adapter(name) else "base"] += param.numel()
    lrs = {"adapter": cfg.lr.adapter, "base": cfg.lr.base, "frozen": 0.0}
    return [{"group": k, "parameters": v, "lr": lrs[k]} for k, v in counts.items() if v]
