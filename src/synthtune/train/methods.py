"""Training methods, registered by name: each turns a loaded base model into a trainable one.

A method returns the model to train; parameter groups (layered learning rates, freezing)
are applied afterwards by ``param_groups`` for every method alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from synthtune.config import TrainConfig
from synthtune.registry import Registry

Method = Callable[[Any, TrainConfig], Any]
METHODS: Registry[Method] = Registry("training method")

# Module-name aliases per architecture family (model.config.model_type).
_ATTENTION = {
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "mistral": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "qwen2": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gemma": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "gpt2": ["c_attn", "c_proj"],
    "bloom": ["query_key_value", "dense"],
    "gpt_neox": ["query_key_value", "dense"],
    "falcon": ["query_key_value", "dense"],
    "bert": ["query", "key", "value"],
}
_MLP = {
    "llama": ["gate_proj", "up_proj", "down_proj"],
    "mistral": ["gate_proj", "up_proj", "down_proj"],
    "qwen2": ["gate_proj", "up_proj", "down_proj"],
    "gemma": ["gate_proj", "up_proj", "down_proj"],
    "gpt2": ["c_fc", "c_proj"],
    "bloom": ["dense_h_to_4h", "dense_4h_to_h"],
    "gpt_neox": ["dense_h_to_4h", "dense_4h_to_h"],
}


def resolve_target_modules(model: Any, target: str | list[str]) -> str | list[str]:
    """Resolve ``attention`` / ``mlp`` / ``all-linear`` / ``query_key_value`` for the model."""
    if isinstance(target, list):
        return target
    model_type = getattr(model.config, "model_type", "")
    if target == "all-linear":
        return "all-linear"
    table = {"attention": _ATTENTION, "query_key_value": _ATTENTION, "mlp": _MLP}.get(target)
    if table is None:
        return [t.strip() for t in target.split(",") if t.strip()]
    if model_type not in table:
        known = ", ".join(sorted(table))
        raise ValueError(
            f"train.lora.target_modules: no {target!r} alias for model type {model_type!r} "
            f"(known: {known}); list the module names instead"
        )
    return table[model_type]


@METHODS.decorator("lora")
def lora(model: Any, cfg: TrainConfig) -> Any:
    from peft import LoraConfig, TaskType, get_peft_model

    peft_config = LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=resolve_target_modules(model, cfg.lora.target_modules),
    )
    return get_peft_model(model, peft_config)


@METHODS.decorator("full")
def full(model: Any, cfg: TrainConfig) -> Any:
    for param in model.parameters():
        param.requires_grad = True
    return model
