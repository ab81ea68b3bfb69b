"""Layered learning rates and freezing, applied the same way for every method.

Adapter parameters (LoRA, prompt/prefix encoders, ``modules_to_save``) learn at
``lr.adapter``; base weights that still train learn at ``lr.base`` (``auto``: per task,
``TrainConfig.learning_rates``); matrices decay by ``weight_decay``. Norm weights are frozen
when ``freeze.layernorm`` is set, and the first N transformer blocks when
``freeze.first_n_layers`` is set.
"""

from __future__ import annotations

import re
from typing import Any

from synthtune.config import TrainConfig

_ADAPTER = re.compile(r"lora_|prompt_encoder|prefix_encoder|modules_to_save|ia3_|lora_magnitude")
_NORM = re.compile(r"norm|ln_|layernorm", re.IGNORECASE)
_BLOCK = re.compile(r"\.(?:layers|h|layer|blocks)\.(\d+)\.")


_EMBED = re.compile(
    r"embed_tokens|wte|word_embeddings|embeddings\.word|token_embedding|patch_embedding"
)


def is_adapter(name: str) -> bool:
    return bool(_ADAPTER.search(name))


def block_index(name: str) -> int | None:
    match = _BLOCK.search(name)
    return int(match.group(1)) if match else None


def apply_freezing(model: Any, cfg: TrainConfig) -> None:
    for name, param in model.named_parameters():
        if is_adapter(name):
            continue
        if cfg.freeze.layernorm and _NORM.search(name):
            param.requires_grad = False
        if cfg.freeze.embeddings and _EMBED.search(name):
            param.requires_grad = False
        block = block_index(name)
        if block is not None and block < cfg.freeze.first_n_layers:
            param.requires_grad = False


def _is_new_head(name: str, cfg: TrainConfig) -> bool:
    """Heads created for the task (``TaskSpec.heads``: a classifier) are new parameters, like
    adapters: they start from scratch and need the adapter learning rate, not the base one."""
    from synthtune.plugins import TASKS

    return any(re.search(rf"(?:^|\.){head}\.", name) for head in TASKS.get(cfg.task).heads)


def _kind(name: str, cfg: TrainConfig) -> str:
    if not is_adapter(name) and _is_new_head(name, cfg):
        return "adapter"
    if not is_adapter(name):
        return "base"
    if cfg.lora.plus_ratio is not None and "lora_B" in name:
        return "adapter_B"  # LoRA+ (Hayou et al., 2024): B learns ratio x faster than A
    return "adapter"


def param_groups(model: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """AdamW groups: adapter (LoRA+ splits out B) and base, each decayed or not (biases,
    norms, 1-D tensors are not decayed)."""
    groups: dict[tuple[str, bool], list[Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        decay = param.ndim >= 2
        groups.setdefault((_kind(name, cfg), decay), []).append(param)
    adapter, base = cfg.learning_rates()
    lrs = {
        "adapter": adapter,
        "adapter_B": adapter * (cfg.lora.plus_ratio or 1.0),
        "base": base,
    }
    return [
        {
            "params": params,
            "lr": lrs[kind],
            "weight_decay": cfg.weight_decay if decay else 0.0,
            "name": kind,
        }
        for (kind, decay), params in sorted(groups.items())
    ]


def group_table(model: Any, cfg: TrainConfig) -> list[dict[str, Any]]:
    """One row per group for the start-of-training table: name, parameter count, LR."""
    counts: dict[str, int] = {"adapter": 0, "adapter_B": 0, "base": 0, "frozen": 0}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            counts["frozen"] += param.numel()
        else:
            counts[_kind(name, cfg)] += param.numel()
    adapter, base = cfg.learning_rates()
    lrs = {
        "adapter": adapter,
        "adapter_B": adapter * (cfg.lora.plus_ratio or 1.0),
        "base": base,
        "frozen": 0.0,
    }
    return [{"group": k, "parameters": v, "lr": lrs[k]} for k, v in counts.items() if v]
