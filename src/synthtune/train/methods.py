"""Training methods, registered by name: how the base model is loaded and made trainable.

Each method is one :class:`TrainingMethod` and one ``METHODS.register`` call. Parameter
groups (layered learning rates, freezing norms/embeddings/blocks) are applied afterwards by
``param_groups`` for every method alike.

A method may not run on every base and task: prefix tuning feeds its virtual tokens as
``past_key_values``, which a decoder takes and an encoder such as BERT/MiniLM does not. Each
method's ``unsupported`` says why before training starts; ``check_method`` asks it on the
base's config with empty (meta) weights, so ``validate`` refuses such a recipe.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from synthtune import plugins
from synthtune.config import TrainConfig
from synthtune.errors import StageError


def _runs_anywhere(model: Any, cfg: TrainConfig) -> str | None:
    return None


@dataclass(frozen=True)
class TrainingMethod:
    """``unsupported(model, cfg)``: why the method cannot train ``model`` (the task model,
    possibly on meta weights), or ``None``."""

    prepare: Callable[[Any, TrainConfig], Any]
    adapter: bool  # True: saves a peft adapter; False: saves the whole model
    summary: str
    load_kwargs: Callable[[TrainConfig], dict[str, Any]] = field(default=lambda cfg: {})
    unsupported: Callable[[Any, TrainConfig], str | None] = _runs_anywhere


METHODS = plugins.METHODS  # name -> TrainingMethod (plugins.register_method)

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
    "clip": ["q_proj", "k_proj", "v_proj", "out_proj"],  # both towers
}
_MLP = {
    "llama": ["gate_proj", "up_proj", "down_proj"],
    "mistral": ["gate_proj", "up_proj", "down_proj"],
    "qwen2": ["gate_proj", "up_proj", "down_proj"],
    "gemma": ["gate_proj", "up_proj", "down_proj"],
    "gpt2": ["c_fc", "c_proj"],
    "bloom": ["dense_h_to_4h", "dense_4h_to_h"],
    "gpt_neox": ["dense_h_to_4h", "dense_4h_to_h"],
    "bert": ["intermediate.dense", "output.dense"],
    "clip": ["fc1", "fc2"],
}
# IA3 scales keys, values and the feed-forward output (Liu et al., 2022).
_IA3 = {
    "llama": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "mistral": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "qwen2": (["k_proj", "v_proj", "down_proj"], ["down_proj"]),
    "gpt2": (["c_attn", "mlp.c_proj"], ["mlp.c_proj"]),
}


def _task_type(cfg: TrainConfig) -> Any:
    from peft import TaskType

    from synthtune.plugins import TASKS

    name = TASKS.get(cfg.task).peft_task
    return None if name is None else TaskType[name]


def _heads_to_save(model: Any, cfg: TrainConfig) -> list[str] | None:
    """Task heads of a plain module (no peft task type to add them): trained and saved with
    the adapter. Task types such as SEQ_CLS add their own heads."""
    from synthtune.plugins import TASKS

    spec = TASKS.get(cfg.task)
    if spec.peft_task is not None:
        return None
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    return [head for head in spec.heads if head in names] or None


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
        raise StageError(
            f"train.lora.target_modules: no {target!r} alias for model type {model_type!r} "
            f"(known: {known}); list the module names instead"
        )
    return table[model_type]


def _lora_config(model: Any, cfg: TrainConfig, dora: bool = False) -> Any:
    from peft import LoraConfig

    lora = cfg.lora
    init: Any = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}
    return LoraConfig(
        task_type=_task_type(cfg),
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        bias=lora.bias,
        use_rslora=lora.use_rslora,
        use_dora=lora.use_dora or dora,
        init_lora_weights=init[lora.init],
        target_modules=resolve_target_modules(model, lora.target_modules),
        modules_to_save=_heads_to_save(model, cfg),
    )


def _lora(model: Any, cfg: TrainConfig) -> Any:
    from peft import get_peft_model

    return get_peft_model(model, _lora_config(model, cfg))


def _dora(model: Any, cfg: TrainConfig) -> Any:
    from peft import get_peft_model

    return get_peft_model(model, _lora_config(model, cfg, dora=True))


def _qlora_load(cfg: TrainConfig) -> dict[str, Any]:
    """4-bit NF4 with double quantization (Dettmers et al., 2023). bitsandbytes has CPU
    kernels too: on CPU it runs (slowly) with fp32 compute, on a GPU with bf16."""
    import importlib.util

    import torch
    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise StageError("train.method qlora needs bitsandbytes: pip install 'synthtune[qlora]'")
    cuda = torch.cuda.is_available()
    return {
        "quantization_config": BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if cuda else torch.float32,
        ),
        "device_map": {"": 0} if cuda else "cpu",
    }


def _qlora(model: Any, cfg: TrainConfig) -> Any:
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training

    # checkpointing only pays on a GPU (see train.stage.device_settings)
    model = prepare_model_for_kbit_training(
        model, use_gradient_checkpointing=torch.cuda.is_available()
    )
    return get_peft_model(model, _lora_config(model, cfg))


def _full(model: Any, cfg: TrainConfig) -> Any:
    for param in model.parameters():
        param.requires_grad = True
    return model


def _freeze(model: Any, cfg: TrainConfig) -> Any:
    """Base weights train, except frozen blocks: the first N, or all but the last N."""
    from synthtune.train.param_groups import block_index

    _full(model, cfg)
    last = cfg.freeze.train_last_n_layers
    if last is not None:
        total = getattr(model.config, "num_hidden_layers", None)
        if total is None:
            raise StageError("train.freeze.train_last_n_layers: model has no num_hidden_layers")
        for name, param in model.named_parameters():
            block = block_index(name)
            if block is not None and block < total - last:
                param.requires_grad = False
    return model


def _takes_past_key_values(model: Any, cfg: TrainConfig) -> str | None:
    """Prefix tuning passes its prefix as ``past_key_values``. A causal LM takes them; for a
    sequence classifier peft requires the parameter by name in the forward of the model or its
    backbone, which neither BERT-style encoders nor (in transformers 5, which calls it
    ``cache``) decoder classifiers have: there peft fails in the first forward pass."""
    import inspect

    if plugins.TASKS.get(cfg.task).peft_task != "SEQ_CLS":
        return None
    backbone = getattr(model, "base_model", model)
    if any(
        "past_key_values" in inspect.signature(module.forward).parameters
        for module in (model, backbone)
    ):
        return None
    return (
        "prefix tuning of a classifier needs a forward that takes past_key_values; "
        f"{type(model).__name__} ({getattr(model.config, 'model_type', '?')}) has none"
    )


def _prompt_learning(kind: str) -> Callable[[Any, TrainConfig], Any]:
    def prepare(model: Any, cfg: TrainConfig) -> Any:
        if kind == "prefix" and (reason := _takes_past_key_values(model, cfg)):
            raise StageError(f"train.method prefix: {reason}; {_alternatives(model, cfg)}")
        from peft import (
            PrefixTuningConfig,
            PromptEncoderConfig,
            PromptTuningConfig,
            PromptTuningInit,
            get_peft_model,
        )

        pl = cfg.prompt_learning
        common: dict[str, Any] = {
            "task_type": _task_type(cfg),
            "num_virtual_tokens": pl.virtual_tokens,
        }
        if kind == "prefix":
            config: Any = PrefixTuningConfig(**common)
        elif kind == "ptuning":
            config = PromptEncoderConfig(**common, encoder_hidden_size=pl.encoder_hidden_size)
        elif pl.init_text:
            config = PromptTuningConfig(
                **common,
                prompt_tuning_init=PromptTuningInit.TEXT,
                prompt_tuning_init_text=pl.init_text,
                tokenizer_name_or_path=model.name_or_path,
            )
        else:
            config = PromptTuningConfig(**common)
        try:
            return get_peft_model(model, config)
        except ValueError as exc:  # e.g. prefix tuning on a classifier without a KV cache
            raise StageError(f"train.method {kind}: {exc}; try lora or ptuning") from None

    return prepare


def _ia3_mapping(model: Any, cfg: TrainConfig) -> str | None:
    model_type = getattr(model.config, "model_type", "")
    if model_type in _IA3:
        return None
    return f"no IA3 module mapping for model type {model_type!r} (known: {', '.join(_IA3)})"


def _lora_targets(model: Any, cfg: TrainConfig) -> str | None:
    """The target modules resolve for this model type and name modules it has."""
    try:
        targets = resolve_target_modules(model, cfg.lora.target_modules)
    except StageError as exc:
        return str(exc).split(": ", 1)[-1]
    if targets == "all-linear":
        return None
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        return f"train.lora.target_modules {missing} are not modules of this model"
    return None


def _ia3(model: Any, cfg: TrainConfig) -> Any:
    from peft import IA3Config, get_peft_model

    if reason := _ia3_mapping(model, cfg):
        raise StageError(f"train.method ia3: {reason}")
    targets, feedforward = _IA3[model.config.model_type]
    config = IA3Config(
        task_type=_task_type(cfg), target_modules=targets, feedforward_modules=feedforward
    )
    return get_peft_model(model, config)


plugins.register_method("full", TrainingMethod(_full, False, "all weights; most compute"))
plugins.register_method(
    "freeze", TrainingMethod(_freeze, False, "train some blocks, freeze the rest")
)
plugins.register_method(
    "lora",
    TrainingMethod(_lora, True, "low-rank adapters; <1 % of parameters", unsupported=_lora_targets),
)
plugins.register_method(
    "dora", TrainingMethod(_dora, True, "weight-decomposed LoRA", unsupported=_lora_targets)
)
plugins.register_method(
    "qlora",
    TrainingMethod(_qlora, True, "LoRA on a 4-bit NF4 base", _qlora_load, _lora_targets),
)
plugins.register_method(
    "prefix",
    TrainingMethod(
        _prompt_learning("prefix"), True, "prefix tuning", unsupported=_takes_past_key_values
    ),
)
plugins.register_method("prompt", TrainingMethod(_prompt_learning("prompt"), True, "prompt tuning"))
plugins.register_method("ptuning", TrainingMethod(_prompt_learning("ptuning"), True, "P-tuning"))
plugins.register_method(
    "ia3",
    TrainingMethod(_ia3, True, "IA3 rescaling vectors; ~0.01 %", unsupported=_ia3_mapping),
)


# ----------------------------------------------------------------------- base/method checks
def empty_task_model(config: Any, task: str, num_labels: int = 2) -> Any:
    """The model ``task`` trains, built from ``config`` on meta weights (no memory, no
    download): a causal LM, or a sequence classifier with ``num_labels`` classes."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    with init_empty_weights():
        if plugins.TASKS.get(task).peft_task == "SEQ_CLS":
            config = copy.deepcopy(config)
            config.num_labels = num_labels
            return AutoModelForSequenceClassification.from_config(config)
        return AutoModelForCausalLM.from_config(config)


def unsupported_methods(config: Any, cfg: TrainConfig) -> dict[str, str]:
    """Method name -> why it cannot train ``cfg.task`` on a base with ``config`` (the
    methods missing from the result can run)."""
    model = empty_task_model(config, cfg.task)
    reasons = {name: METHODS.get(name).unsupported(model, cfg) for name in METHODS}
    return {name: reason for name, reason in reasons.items() if reason}


def _alternatives(model: Any, cfg: TrainConfig) -> str:
    usable = [n for n in METHODS if not METHODS.get(n).unsupported(model, cfg)]
    return f"use one of {', '.join(usable)}" if usable else "use another base"


def method_problem(config: Any, cfg: TrainConfig) -> str | None:
    """``train.method: why`` when the method cannot train ``cfg.task`` on this base, else
    ``None`` (a task without a peft task type, such as clip, builds its own model and is not
    checked here)."""
    if plugins.TASKS.get(cfg.task).peft_task is None:
        return None
    model = empty_task_model(config, cfg.task)
    reason = METHODS.get(cfg.method).unsupported(model, cfg)
    if reason is None:
        return None
    return f"train.method: {cfg.method} cannot run here: {reason}; {_alternatives(model, cfg)}"


def check_method(recipe: Any) -> None:
    """``RecipeError`` naming ``train.method`` when it cannot train ``train.task`` on
    ``train.base`` (validate time, from the base's config; a base whose config cannot be read
    offline is left to ``model_names.recipe_model_problems``, which reports it).

    Asking a method builds the task model on meta weights, which needs transformers and
    torch (5-8 s of imports on 2 cores). Methods that run anywhere (full, freeze) are not
    asked; for the others the answer is cached per (base config, task, method settings,
    synthtune version), so a recipe validates in about a second from the second time on."""
    from synthtune.errors import RecipeError

    if plugins.TASKS.get(recipe.train.task).peft_task is None:
        return
    method = METHODS.get(recipe.train.method)
    config = _base_config_file(recipe)  # read once, without transformers
    if method.adapter and recipe.train.method in ("lora", "dora", "qlora"):
        hidden = _hidden_size(recipe, config)
        if hidden is not None and recipe.train.lora.r > hidden:
            raise RecipeError(
                str(recipe.source),
                [
                    f"train.lora.r: {recipe.train.lora.r} is above the base's hidden size "
                    f"{hidden}, the largest rank an adapter can have (8 to 64 is usual)"
                ],
            )
    if method.unsupported is _runs_anywhere or _known_fine(recipe, config):
        return
    key = _check_key(recipe, config)
    cached = _cached_check(key)
    if cached is not None:
        problem = cached.get("problem")
    else:
        from synthtune.model_names import built_on_demand, offline_problem
        from synthtune.train.advisor import base_config

        if not built_on_demand(recipe.train.base) and offline_problem(recipe.train.base):
            return  # recipe_model_problems names the missing model; nothing to ask here
        try:
            model_config = base_config(recipe, None, local_only=True)
        except StageError:
            return
        problem = method_problem(model_config, recipe.train)
        _store_check(key, problem)
    if problem:
        raise RecipeError(str(recipe.source), [problem])


def _base_config_file(recipe: Any) -> dict[str, Any] | None:
    """The base's config.json as a dict, read without transformers (None: not a local file,
    or local-tiny, whose config the recipe holds)."""
    import json
    from pathlib import Path

    from synthtune.model_names import built_on_demand, resolve_name

    if built_on_demand(recipe.train.base):
        return None
    try:
        found = json.loads(
            (Path(resolve_name(recipe.train.base)) / "config.json").read_text("utf-8")
        )
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _hidden_size(recipe: Any, config: dict[str, Any] | None) -> int | None:
    from synthtune.models import LOCAL_TINY

    if recipe.train.base == LOCAL_TINY:
        return int(recipe.local_tiny.hidden_size)
    config = config or {}
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else config
    for key in ("hidden_size", "d_model", "n_embd", "dim"):
        if isinstance(text.get(key), int):
            return int(text[key])
    return None


def _known_fine(recipe: Any, config: dict[str, Any] | None) -> bool:
    """LoRA/DoRA with a target alias of a family in the alias tables: the alias names the
    family's modules, so the answer is known from the config file's model_type alone."""
    from synthtune.models import LOCAL_TINY

    cfg = recipe.train
    target = cfg.lora.target_modules
    if cfg.method not in ("lora", "dora") or not isinstance(target, str):
        return False
    if target == "all-linear":
        return True
    table = {"attention": _ATTENTION, "query_key_value": _ATTENTION, "mlp": _MLP}.get(target)
    if table is None:
        return False
    if cfg.base == LOCAL_TINY:
        return "llama" in table
    return config is not None and config.get("model_type") in table


def _check_key(recipe: Any, config: dict[str, Any] | None) -> str | None:
    """What a method check depends on, hashed; None when the base's config is not a local
    file (a hub id): then nothing is cached."""
    from synthtune import __version__
    from synthtune.model_names import built_on_demand
    from synthtune.records import content_hash

    cfg = recipe.train
    parts: dict[str, Any] = {
        "version": __version__,
        "task": cfg.task,
        "method": cfg.method,
        "lora": cfg.lora.model_dump(mode="json"),
        "prompt_learning": cfg.prompt_learning.model_dump(mode="json"),
    }
    if built_on_demand(cfg.base):
        parts["local"] = [cfg.base, recipe.local_tiny.model_dump(mode="json")]
    elif config is None:
        return None
    else:
        parts["config"] = config
    return content_hash(parts, 32)


def _check_file(key: str) -> Any:
    from synthtune.model_names import cache_root

    return cache_root() / "checks" / f"{key}.json"


def _cached_check(key: str | None) -> dict[str, Any] | None:
    import json

    if key is None:
        return None
    try:
        found = json.loads(_check_file(key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _store_check(key: str | None, problem: str | None) -> None:
    import contextlib

    from synthtune.store import atomic_write_json

    if key is None:
        return
    # a read-only home only costs the next validate its seconds
    with contextlib.suppress(OSError):
        atomic_write_json(_check_file(key), {"problem": problem})
